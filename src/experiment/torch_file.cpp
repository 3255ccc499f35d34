// A reader of torch.save files: a small pickle machine for the opcodes Python emits, with the
// globals torch.save uses (tensor rebuilding, OrderedDict, storages).
#include "quantlab/experiment/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "nesting.h"
#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"

namespace quantlab::experiment {
namespace {

using c10::IValue;

// A Python global (module.name) on the pickle stack until something calls it. Inside a tuple (a
// storage's persistent id names its type so) it is carried as text with this prefix.
const char* const kGlobalTag = "\x01global:";

// A stack entry: a value, a global or the MARK's position (kept apart in `marks_`).
struct Item {
  bool global = false;
  IValue value;  // the value, or the global's "module.name"
};

torch::ScalarType storage_dtype(const std::string& name, const std::string& file) {
  static const std::map<std::string, torch::ScalarType> kTypes = {
      {"FloatStorage", torch::kFloat32},     {"DoubleStorage", torch::kFloat64}, {"HalfStorage", torch::kFloat16},
      {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kInt64},     {"IntStorage", torch::kInt32},
      {"ShortStorage", torch::kInt16},       {"CharStorage", torch::kInt8},      {"ByteStorage", torch::kUInt8},
      {"BoolStorage", torch::kBool}};
  const auto it = kTypes.find(name);
  if (it == kTypes.end()) throw IoError(file + ": holds a tensor of an unsupported storage type torch." + name);
  return it->second;
}

class Machine {
 public:
  Machine(const std::string& file, caffe2::serialize::PyTorchStreamReader& zip, const char* data, size_t size)
      : file_(file), zip_(zip), p_(data), end_(data + size) {}

  // Every value the machine still holds (its stack and memo), for the nesting check.
  std::vector<const IValue*> values() const {
    std::vector<const IValue*> out;
    for (const Item& i : stack_) out.push_back(&i.value);
    for (const auto& [k, i] : memo_) out.push_back(&i.value);
    return out;
  }

  IValue run() {
    for (;;) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          take(8);
          break;  // FRAME
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case '.':
          return pop_value();  // STOP
        case 'N':
          push(IValue());
          break;  // NONE
        case 0x88:
          push(IValue(true));
          break;  // NEWTRUE
        case 0x89:
          push(IValue(false));
          break;  // NEWFALSE
        case 'J':
          push(IValue(static_cast<int64_t>(le<int32_t>())));
          break;  // BININT
        case 'K':
          push(IValue(static_cast<int64_t>(byte())));
          break;  // BININT1
        case 'M':
          push(IValue(static_cast<int64_t>(le<uint16_t>())));
          break;  // BININT2
        case 0x8a:
          push(IValue(long_int(byte())));
          break;  // LONG1
        case 0x8b:
          push(IValue(long_int(le<uint32_t>())));
          break;  // LONG4
        case 'G':
          push(IValue(be_double()));
          break;  // BINFLOAT
        case 'X':
          push(IValue(text(le<uint32_t>())));
          break;  // BINUNICODE
        case 0x8c:
          push(IValue(text(byte())));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(IValue(text(le<uint64_t>())));
          break;  // BINUNICODE8
        case 'B':
          push(IValue(text(le<uint32_t>())));
          break;  // BINBYTES
        case 'C':
          push(IValue(text(byte())));
          break;  // SHORT_BINBYTES
        case '}':
          push(IValue(new_dict()));
          break;  // EMPTY_DICT
        case ']':
          push(IValue(c10::impl::GenericList(c10::AnyType::get())));
          break;  // EMPTY_LIST
        case ')':
          push(IValue(c10::ivalue::Tuple::create(std::vector<IValue>{})));
          break;  // EMPTY_TUPLE
        case 0x85:
          tuple_of(1);
          break;  // TUPLE1
        case 0x86:
          tuple_of(2);
          break;  // TUPLE2
        case 0x87:
          tuple_of(3);
          break;  // TUPLE3
        case 't':
          tuple_of(since_mark());
          break;  // TUPLE
        case 'a':
          append(1);
          break;  // APPEND
        case 'e':
          append(since_mark());
          break;  // APPENDS
        case 's':
          set_items(2);
          break;  // SETITEM
        case 'u':
          set_items(since_mark());
          break;  // SETITEMS
        case 'q':
          memo_[byte()] = top();
          break;  // BINPUT
        case 'r':
          memo_[le<uint32_t>()] = top();
          break;  // LONG_BINPUT
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          stack_.push_back(memo_at(byte()));
          break;  // BINGET
        case 'j':
          stack_.push_back(memo_at(le<uint32_t>()));
          break;     // LONG_BINGET
        case 'c': {  // GLOBAL
          const std::string module = line();
          push_global(module + "." + line());
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const std::string name = pop_text(), module = pop_text();
          push_global(module + "." + name);
          break;
        }
        case 'Q':
          persistent();
          break;  // BINPERSID
        case 'R':
        case 0x81:
          call();
          break;  // REDUCE, NEWOBJ
        case 'b':
          pop_value();
          break;  // BUILD: an object's state (e.g. a state dict's _metadata) is dropped
        default:
          fail("unsupported pickle opcode 0x" + hex(op));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw IoError(file_ + ": cannot read this torch.save file (" + why + ")");
  }
  static std::string hex(uint8_t v) {
    const char* d = "0123456789abcdef";
    return {d[v >> 4], d[v & 15]};
  }
  const char* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) fail("truncated pickle");
    const char* at = p_;
    p_ += n;
    return at;
  }
  uint8_t byte() { return static_cast<uint8_t>(*take(1)); }
  template <typename T>
  T le() {
    T v;
    std::memcpy(&v, take(sizeof v), sizeof v);  // pickle's integers are little-endian, as x86 and ARM
    return v;
  }
  double be_double() {
    const char* b = take(8);
    char r[8];
    for (int i = 0; i < 8; ++i) r[i] = b[7 - i];
    double v;
    std::memcpy(&v, r, 8);
    return v;
  }
  int64_t long_int(size_t n) {
    if (n > 8) fail("an integer wider than 64 bits");
    const char* b = take(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);  // negative
    return static_cast<int64_t>(v);
  }
  std::string text(size_t n) { return std::string(take(n), n); }
  std::string line() {
    std::string s;
    for (char c = static_cast<char>(byte()); c != '\n'; c = static_cast<char>(byte())) s += c;
    return s;
  }
  static c10::impl::GenericDict new_dict() { return c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()); }

  void push(IValue v) { stack_.push_back({false, std::move(v)}); }
  void push_global(const std::string& name) { stack_.push_back({true, IValue(name)}); }
  const Item& top() const {
    if (stack_.empty()) fail("stack underflow");
    return stack_.back();
  }
  int since_mark() {
    if (marks_.empty()) fail("a MARK is missing");
    const size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) fail("stack underflow");
    return static_cast<int>(stack_.size() - m);
  }
  Item pop() {
    if (stack_.empty()) fail("stack underflow");
    Item i = std::move(stack_.back());
    stack_.pop_back();
    return i;
  }
  // A value; a global inside a container is kept as tagged text (a storage type in a persistent id).
  IValue pop_value() {
    Item i = pop();
    return i.global ? IValue(kGlobalTag + i.value.toStringRef()) : i.value;
  }
  std::string pop_text() {
    const IValue v = pop_value();
    if (!v.isString()) fail("a name that is not text");
    return v.toStringRef();
  }
  Item memo_at(uint64_t k) const {
    const auto it = memo_.find(k);
    if (it == memo_.end()) fail("a memo entry is missing");
    return it->second;
  }
  std::vector<IValue> pop_n(int n) {
    std::vector<IValue> v(static_cast<size_t>(n));
    for (int i = n - 1; i >= 0; --i) v[static_cast<size_t>(i)] = pop_value();
    return v;
  }
  void tuple_of(int n) { push(IValue(c10::ivalue::Tuple::create(pop_n(n)))); }
  void append(int n) {
    auto v = pop_n(n);
    const IValue list = top().value;
    if (top().global || !list.isList()) fail("APPEND to something that is not a list");
    auto l = list.toList();
    for (auto& x : v) l.push_back(std::move(x));
  }
  void set_items(int n) {
    if (n % 2) fail("an odd number of dict items");
    auto v = pop_n(n);
    const IValue dict = top().value;
    if (top().global || !dict.isGenericDict()) fail("SETITEM on something that is not a dict");
    auto d = dict.toGenericDict();
    for (size_t i = 0; i < v.size(); i += 2) d.insert_or_assign(v[i], v[i + 1]);
  }
  // ('storage', torch.FloatStorage, key, location, numel): the zip's record data/<key>, as a 1-d tensor.
  void persistent() {
    const IValue pid = pop_value();
    if (!pid.isTuple()) fail("a persistent id that is not a tuple");
    const auto e = pid.toTupleRef().elements();
    if (e.size() < 5 || !e[0].isString() || e[0].toStringRef() != "storage" || !e[1].isString() || !e[2].isString())
      fail("a persistent id that is not a storage");
    std::string type = e[1].toStringRef();
    if (type.rfind(kGlobalTag, 0) == 0) type = type.substr(std::strlen(kGlobalTag));
    if (type.rfind("torch.", 0) == 0) type = type.substr(6);
    const torch::ScalarType dtype = storage_dtype(type, file_);
    if (!e[4].isInt() || e[4].toInt() < 0) fail("a storage without its size");
    const int64_t numel = e[4].toInt();
    const std::string record = "data/" + e[2].toStringRef();
    // Read once however many tensors view it (torch.load shares it too): a file that names one
    // storage many times does not grow the memory it takes.
    const auto cached = storages_.find(record);
    if (cached != storages_.end()) {
      if (cached->second.scalar_type() != dtype || cached->second.numel() < numel)
        fail("the storage record " + record + " is named with two types or sizes");
      push(IValue(cached->second));
      return;
    }
    if (!zip_.hasRecord(record)) fail("the storage record " + record + " is missing");
    auto [data, bytes] = zip_.getRecord(record);
    if (static_cast<uint64_t>(numel) > bytes / c10::elementSize(dtype))
      fail("the storage record " + record + " is truncated");
    const size_t need = static_cast<size_t>(numel) * c10::elementSize(dtype);
    torch::Tensor t = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    if (need > 0) std::memcpy(t.data_ptr(), data.get(), need);
    storages_.emplace(record, t);
    push(IValue(t));
  }
  void call() {
    const IValue args = pop_value();
    const Item callee = pop();
    if (!callee.global) fail("a call of something that is not a class or function");
    const std::string name = callee.value.toStringRef();
    if (!args.isTuple()) fail("the arguments of " + name + " are not a tuple");
    const auto a = args.toTupleRef().elements();
    if (name == "collections.OrderedDict") {
      push(IValue(new_dict()));
    } else if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      push(IValue(rebuild_tensor(a)));
    } else if (name.rfind("torch.jit._pickle.", 0) == 0 && name != "torch.jit._pickle.build_tensor_from_id") {
      // libtorch's own pickler: restore_type_tag(value, type) and build_{int,double,bool,tensor}list(list).
      if (a.empty()) fail("a call of " + name + " without arguments");
      push(a[0]);
    } else if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty()) fail("a parameter without its tensor");
      push(a[0]);
    } else {
      fail("it holds a Python object of class " + name + ", which QuantLab cannot rebuild");
    }
  }
  torch::Tensor rebuild_tensor(c10::ArrayRef<IValue> a) {
    if (a.size() < 4 || !a[0].isTensor() || !a[2].isTuple() || !a[3].isTuple()) fail("a tensor without its storage");
    const torch::Tensor storage = a[0].toTensor();
    std::vector<int64_t> size, stride;
    const auto whole = [&](const IValue& v) {
      if (!v.isInt() || v.toInt() < 0) fail("a tensor whose sizes, strides or offset are not whole numbers");
      return v.toInt();
    };
    for (const auto& s : a[2].toTupleRef().elements()) size.push_back(whole(s));
    for (const auto& s : a[3].toTupleRef().elements()) stride.push_back(whole(s));
    if (stride.size() != size.size())
      fail("a tensor with " + std::to_string(size.size()) + " sizes and " + std::to_string(stride.size()) + " strides");
    const int64_t offset = whole(a[1]);
    // The highest element the view reads must be in the storage (without overflowing on the way).
    if (std::find(size.begin(), size.end(), 0) != size.end())  // empty: reads nothing
      return torch::empty(size, storage.options());
    int64_t last = offset, elements = 1;
    for (size_t i = 0; i < size.size(); ++i) {
      int64_t reach = 0;
      if (__builtin_mul_overflow(size[i] - 1, stride[i], &reach) || __builtin_add_overflow(last, reach, &last) ||
          __builtin_mul_overflow(elements, size[i], &elements))
        fail("a tensor whose sizes overflow");
    }
    if (last >= storage.numel()) fail("a tensor larger than its storage");
    // A view repeats elements only through zero strides (an expanded tensor); its copy must fit in
    // this machine's memory.
    if (static_cast<uint64_t>(elements) > machine_memory_bytes() / storage.element_size())
      fail("a tensor of " + std::to_string(elements) + " elements, more than this machine's memory holds");
    const torch::Tensor view = storage.as_strided(size, stride, offset);
    // A tensor that is its whole storage shares it (the storage is read once and kept for the
    // file's other views: no second copy); a part of one is copied out of it.
    if (offset == 0 && elements == storage.numel() && view.is_contiguous()) return view;
    return view.clone();
  }

  const std::string& file_;
  caffe2::serialize::PyTorchStreamReader& zip_;
  const char* p_;
  const char* end_;
  std::vector<Item> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Item> memo_;
  std::map<std::string, torch::Tensor> storages_;  // by record
};

}  // namespace

c10::IValue read_torch_file(const std::string& file) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file);
  } catch (const c10::Error&) {
    throw IoError(file + ": not a torch.save file (no zip container: corrupt, truncated, or another format)");
  }
  if (!zip->hasRecord("data.pkl")) throw IoError(file + ": not a torch.save file (no data.pkl record)");
  try {
    auto [data, size] = zip->getRecord("data.pkl");
    auto m = std::make_unique<Machine>(file, *zip, static_cast<const char*>(data.get()), size);
    IValue v;
    try {
      v = m->run();
    } catch (...) {  // what it built so far is released with it: checked first
      if (nests_too_deep(m->values())) {
        m.release();  // NOLINT(bugprone-unused-return-value)
        throw_too_deep(file);
      }
      throw;
    }
    std::vector<const IValue*> roots = m->values();
    roots.push_back(&v);
    if (nests_too_deep(roots)) {  // nothing of it is released: that would recurse past the stack
      m.release();                // NOLINT(bugprone-unused-return-value)
      abandon_too_deep(v, file);
    }
    return v;
  } catch (const c10::Error& e) {
    throw IoError(file + ": cannot read this torch.save file (" + e.what_without_backtrace() + ")");
  }
}

std::vector<char> plain_torch_save(const IValue& v) {
  // torch::pickle_save's steps, with the pickler's aggregate tags off.
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* buf, size_t n) { pickle.insert(pickle.end(), buf, buf + n); }, nullptr,
                              nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(v);
  pickler.stop();
  std::vector<char> file;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* bytes, size_t n) {
    const char* b = static_cast<const char*>(bytes);
    file.insert(file.end(), b, b + n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  return file;
}

}  // namespace quantlab::experiment

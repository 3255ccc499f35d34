// Writing an integer model as ONNX.
#include "quantlab/export/onnx.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "onnx_model.pb.h"
#include "quantlab/util/error.h"

namespace quantlab::export_ {
namespace {

namespace ox = quantlab::onnx;
using runtime::Layer;
using runtime::LayerKind;

constexpr int kLevelZero = 128;  // levels travel as uint8: level + 128

class Graph {
 public:
  explicit Graph(ox::GraphProto* g) : g_(g) {}

  template <typename T>
  std::string constant(const std::string& hint, ox::TensorProto::DataType type, const std::vector<int64_t>& dims,
                       const std::vector<T>& values) {
    const std::string name = hint + "_" + std::to_string(count_++);
    ox::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
    return name;
  }
  std::string scalar_u8(uint8_t v) { return constant<uint8_t>("zp", ox::TensorProto::UINT8, {}, {v}); }
  std::string scalar_f(float v) { return constant<float>("c", ox::TensorProto::FLOAT, {}, {v}); }

  ox::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint) {
    ox::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(hint + "_" + std::to_string(count_));
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(hint + "_" + std::to_string(count_++));
    return n;
  }
  static std::string out(const ox::NodeProto* n) { return n->output(0); }

  static void ints(ox::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    ox::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(ox::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void integer(ox::NodeProto* n, const std::string& name, int64_t v) {
    ox::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(ox::AttributeProto::INT);
    a->set_i(v);
  }

 private:
  ox::GraphProto* g_;
  int count_ = 0;
};

void tensor_type(ox::ValueInfoProto* v, const std::string& name, ox::TensorProto::DataType type,
                 const std::vector<int64_t>& dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(type);
  auto* shape = t->mutable_shape();
  auto* batch = shape->add_dim();
  batch->set_dim_param("N");
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

// Writes a model's layers as an ONNX graph, one method per kind of layer, tracking the current
// value (its name, and what it holds).
class Writer {
 public:
  Writer(const runtime::Model& m, ox::GraphProto* g) : m_(m), g_(g), b(g) {}

  void write() {
    tensor_type(g_->add_input(), "image", ox::TensorProto::UINT8, {m_.input.channels, m_.input.height, m_.input.width});
    input();
    for (const Layer& l : m_.layers) {
      switch (l.kind) {
        case LayerKind::kFlatten:
          flatten();
          break;
        case LayerKind::kConv:
        case LayerKind::kLinear:
          if (kind == Kind::kFloat)
            float_input_layer(l);
          else
            integer_layer(l);
          break;
        case LayerKind::kMaxPool:
          max_pool(l);
          break;
        case LayerKind::kThreshold:
          threshold(l);
          break;
        case LayerKind::kAffine:
          scores(l);
          break;
        default:
          break;  // refused by write_onnx
      }
    }
  }

 private:
  enum class Kind { kPixels, kLevels, kFloat, kAcc, kFloatExact };

  // The image: padded, and normalised when the model's input is.
  void input() {
    const auto& m = m_;
    const int64_t p = m.input.pad;
    if (p > 0) {
      auto* n = b.node(
          "Pad",
          {x, b.constant<int64_t>("pads", ox::TensorProto::INT64, {8}, {0, 0, p, p, 0, 0, p, p}), b.scalar_u8(0)},
          "pad");
      x = Graph::out(n);
    }
    if (!m.input.mean.empty()) {
      const auto c = m.input.channels;
      std::vector<float> mean(m.input.mean.begin(), m.input.mean.end()), std(m.input.std.begin(), m.input.std.end());
      auto* cast = b.node("Cast", {x}, "pixels");
      Graph::integer(cast, "to", ox::TensorProto::FLOAT);
      x = Graph::out(b.node("Div", {Graph::out(cast), b.scalar_f(255.0f)}, "scaled"));
      x = Graph::out(
          b.node("Sub", {x, b.constant<float>("mean", ox::TensorProto::FLOAT, {1, c, 1, 1}, mean)}, "centred"));
      x = Graph::out(
          b.node("Div", {x, b.constant<float>("std", ox::TensorProto::FLOAT, {1, c, 1, 1}, std)}, "normalised"));
      kind = Kind::kFloat;
    }
  }

  void flatten() {
    auto* n = b.node("Flatten", {x}, "flatten");
    Graph::integer(n, "axis", 1);
    x = Graph::out(n);
    rank = 2;
  }

  // A conv or linear layer on a normalised image: float weights (levels x step), float products.
  void float_input_layer(const Layer& l) {
    const bool conv = l.kind == LayerKind::kConv;
    std::vector<float> w;
    for (int8_t v : l.weights) w.push_back(static_cast<float>(v * l.weight_step));
    if (conv) {
      auto* n = b.node(
          "Conv",
          {x, b.constant<float>(l.name, ox::TensorProto::FLOAT, {l.out, l.in / l.groups, l.kernel, l.kernel}, w)},
          l.name);
      Graph::ints(n, "kernel_shape", {l.kernel, l.kernel});
      Graph::ints(n, "strides", {l.stride, l.stride});
      Graph::ints(n, "pads", {l.pad, l.pad, l.pad, l.pad});
      Graph::integer(n, "group", l.groups);
      x = Graph::out(n);
    } else {
      std::vector<float> wt(w.size());  // [in, out]
      for (int64_t o = 0; o < l.out; ++o)
        for (int64_t i = 0; i < l.in; ++i)
          wt[static_cast<size_t>(i * l.out + o)] = w[static_cast<size_t>(o * l.in + i)];
      x = Graph::out(
          b.node("MatMul", {x, b.constant<float>(l.name, ox::TensorProto::FLOAT, {l.in, l.out}, wt)}, l.name));
    }
    kind = Kind::kFloat;  // a float accumulator
  }

  // A conv or linear layer on pixels or levels: ConvInteger / MatMulInteger with zero points.
  void integer_layer(const Layer& l) {
    const bool conv = l.kind == LayerKind::kConv;
    const int64_t fan = l.in / l.groups * l.kernel * l.kernel;
    const uint8_t zero = kind == Kind::kPixels ? 0 : kLevelZero;
    std::vector<uint8_t> w;
    double worst = 0;
    for (int64_t o = 0; o < l.out; ++o) {
      double sum = 0;
      for (int64_t j = 0; j < fan; ++j) sum += std::abs(l.weights[static_cast<size_t>(o * fan + j)]);
      worst = std::max(worst, sum);
    }
    max_abs_acc = worst * (kind == Kind::kPixels ? 255.0 : max_level);
    if (conv) {
      for (int8_t v : l.weights) w.push_back(static_cast<uint8_t>(v + kLevelZero));
      std::string in = x;
      if (l.pad > 0)
        in = Graph::out(b.node(
            "Pad",
            {x, b.constant<int64_t>("pads", ox::TensorProto::INT64, {8}, {0, 0, l.pad, l.pad, 0, 0, l.pad, l.pad}),
             b.scalar_u8(zero)},
            "pad"));
      auto* n = b.node(
          "ConvInteger",
          {in, b.constant<uint8_t>(l.name, ox::TensorProto::UINT8, {l.out, l.in / l.groups, l.kernel, l.kernel}, w),
           b.scalar_u8(zero), b.scalar_u8(kLevelZero)},
          l.name);
      Graph::ints(n, "kernel_shape", {l.kernel, l.kernel});
      Graph::ints(n, "strides", {l.stride, l.stride});
      Graph::integer(n, "group", l.groups);
      x = Graph::out(n);
    } else {
      w.resize(l.weights.size());
      for (int64_t o = 0; o < l.out; ++o)
        for (int64_t i = 0; i < l.in; ++i)
          w[static_cast<size_t>(i * l.out + o)] =
              static_cast<uint8_t>(l.weights[static_cast<size_t>(o * l.in + i)] + kLevelZero);
      x = Graph::out(b.node("MatMulInteger",
                            {x, b.constant<uint8_t>(l.name, ox::TensorProto::UINT8, {l.in, l.out}, w),
                             b.scalar_u8(zero), b.scalar_u8(kLevelZero)},
                            l.name));
    }
    kind = Kind::kAcc;
  }

  void max_pool(const Layer& l) {
    if (kind == Kind::kAcc) {
      if (max_abs_acc >= 16777216.0)
        throw Error(l.name + ": the accumulator can exceed 2^24, which float cannot hold exactly for MaxPool");
      auto* cast = b.node("Cast", {x}, "acc");
      Graph::integer(cast, "to", ox::TensorProto::FLOAT);
      x = Graph::out(cast);
      kind = Kind::kFloatExact;
    }
    auto* n = b.node("MaxPool", {x}, "maxpool");
    Graph::ints(n, "kernel_shape", {l.pool_kernel, l.pool_kernel});
    Graph::ints(n, "strides", {l.pool_stride, l.pool_stride});
    x = Graph::out(n);
  }

  // Batch norm and activation folded: per channel, the direction, one comparison per threshold,
  // the counts mapped to the levels.
  void threshold(const Layer& l) {
    if (kind == Kind::kAcc) {
      if (max_abs_acc >= 16777216.0)
        throw Error(l.name + ": the accumulator can exceed 2^24, which float cannot hold exactly");
      auto* cast = b.node("Cast", {x}, "acc");
      Graph::integer(cast, "to", ox::TensorProto::FLOAT);
      x = Graph::out(cast);
    }
    const int64_t c = l.channels, K = l.num_thresholds;
    const std::vector<int64_t> dims = rank == 4 ? std::vector<int64_t>{1, c, 1, 1} : std::vector<int64_t>{1, c};
    std::vector<float> sign;
    for (int64_t ch = 0; ch < c; ++ch) sign.push_back(l.below[static_cast<size_t>(ch)] ? -1.0f : 1.0f);
    const std::string z =
        Graph::out(b.node("Mul", {x, b.constant<float>("sign", ox::TensorProto::FLOAT, dims, sign)}, "signed"));
    std::string count;
    for (int64_t k = 0; k < K; ++k) {
      std::vector<float> t;
      for (int64_t ch = 0; ch < c; ++ch) {
        const size_t at = static_cast<size_t>(ch * K + k);
        const double v = l.float_input ? l.float_thresholds[at] : static_cast<double>(l.int_thresholds[at]);
        t.push_back(static_cast<float>(sign[static_cast<size_t>(ch)] * v));
      }
      const std::string ge = Graph::out(
          b.node("GreaterOrEqual", {z, b.constant<float>("threshold", ox::TensorProto::FLOAT, dims, t)}, "above"));
      auto* cast = b.node("Cast", {ge}, "step");
      Graph::integer(cast, "to", ox::TensorProto::INT32);
      count = count.empty() ? Graph::out(cast) : Graph::out(b.node("Add", {count, Graph::out(cast)}, "count"));
    }
    std::vector<uint8_t> table;
    for (int8_t v : l.levels) table.push_back(static_cast<uint8_t>(v + kLevelZero));
    x = Graph::out(b.node("Gather", {b.constant<uint8_t>("levels", ox::TensorProto::UINT8, {K + 1}, table), count},
                          l.name.substr(0, l.name.find(' '))));
    kind = Kind::kLevels;
    max_level = 0;
    for (int8_t v : l.levels) max_level = std::max(max_level, std::abs(static_cast<double>(v)));
  }

  // The scores and the label.
  void scores(const Layer& l) {
    ox::GraphProto* g = g_;
    auto* cast = b.node("Cast", {x}, "acc");
    Graph::integer(cast, "to", ox::TensorProto::FLOAT);
    std::vector<float> scale(l.scale.begin(), l.scale.end()), shift(l.shift.begin(), l.shift.end());
    const std::string scaled = Graph::out(
        b.node("Mul", {Graph::out(cast), b.constant<float>("scale", ox::TensorProto::FLOAT, {1, l.channels}, scale)},
               "scaled"));
    auto* scores =
        b.node("Add", {scaled, b.constant<float>("shift", ox::TensorProto::FLOAT, {1, l.channels}, shift)}, "scores");
    scores->set_output(0, "scores");
    auto* label = b.node("ArgMax", {"scores"}, "label");
    Graph::integer(label, "axis", 1);
    Graph::integer(label, "keepdims", 0);
    label->set_output(0, "label");
    tensor_type(g->add_output(), "scores", ox::TensorProto::FLOAT, {l.channels});
    tensor_type(g->add_output(), "label", ox::TensorProto::INT64, {});
  }

  const runtime::Model& m_;
  ox::GraphProto* g_;
  Graph b;
  Kind kind = Kind::kPixels;
  std::string x = "image";
  int rank = 4;  // 4: [N, C, H, W]; 2: [N, F]
  double max_abs_acc = 0;
  double max_level = 127;  // the largest |level| of the last activation
};

}  // namespace

void check_onnx_layers(const runtime::Model& m) {
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& l = m.layers[i];
    if (l.is_float_step() || (l.kind == LayerKind::kAffine && i + 1 < m.layers.size()))
      throw Error(m.net_class + ": layer " + l.name + " is a float step (" + runtime::layer_kind_name(l.kind) +
                  (l.float_weights.empty() ? "" : " with float weights") +
                  "), which the ONNX writer does not write yet; export it with --format=qlm (the integer runtime "
                  "runs it)");
  }
}

void write_onnx(const runtime::Model& m, const std::string& file) {
  check_onnx_layers(m);
  ox::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("QuantLab");
  model.set_producer_version("1");
  model.set_doc_string(m.net_class + " for " + m.problem + ", " + m.source +
                       ": integer layers (ConvInteger, "
                       "MatMulInteger) with batch norm and activations folded into thresholds");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(13);
  ox::GraphProto* g = model.mutable_graph();
  g->set_name(m.net_class);
  Writer(m, g).write();
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  const bool serialized = out && model.SerializeToOstream(&out);
  out.close();  // the last bytes reach the file here: a full disk shows now
  if (!serialized || out.fail()) throw IoError(file + ": cannot write the ONNX model (disk full or not writable)");
}

}  // namespace quantlab::export_

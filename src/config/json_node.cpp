// JsonNode: typed, path-aware access to a parsed JSON document.
#include "quantlab/config/json_node.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"
#include "quantlab/util/strings.h"

namespace quantlab::config {
namespace {

// A key's step in a path: "lr" after a dot, or ["treat.optimizer.params.lr"] for a key that holds
// dots itself (a sweep design's factors), so that the path does not read as deeper than it is.
std::string child_path(const std::string& path, const std::string& key) {
  if (key.find('.') != std::string::npos) return path + "[\"" + key + "\"]";
  return path.empty() ? key : path + "." + key;
}

}  // namespace

JsonNode::JsonNode(const nlohmann::json& value, std::string path) : value_(&value), path_(std::move(path)) {}

void JsonNode::fail(const std::string& message) const {
  throw ConfigError((path_.empty() ? std::string("config") : path_) + ": " + message);
}

void JsonNode::wrong_type(const char* expected) const {
  fail(std::string("expected ") + expected + ", got " + value_->dump());
}

void JsonNode::expect_object() const {
  if (!value_->is_object()) wrong_type("an object");
}

bool JsonNode::has(const std::string& key) const {
  expect_object();
  auto it = value_->find(key);
  return it != value_->end() && !it->is_null();
}

JsonNode JsonNode::at(const std::string& key) const {
  expect_object();
  auto it = value_->find(key);
  const std::string child = child_path(path_, key);
  if (it == value_->end()) throw ConfigError(child + ": missing");
  return JsonNode(*it, child);
}

JsonNode JsonNode::at(size_t index) const {
  if (!value_->is_array()) wrong_type("an array");
  if (index >= value_->size())
    fail("expected at least " + std::to_string(index + 1) + " elements, got " + std::to_string(value_->size()));
  return JsonNode((*value_)[index], path_ + "[" + std::to_string(index) + "]");
}

size_t JsonNode::size() const {
  if (!value_->is_array() && !value_->is_object()) wrong_type("an array or object");
  return value_->size();
}

std::vector<std::string> JsonNode::keys() const {
  expect_object();
  std::vector<std::string> out;
  for (auto it = value_->begin(); it != value_->end(); ++it) out.push_back(it.key());
  return out;
}

void JsonNode::allow_keys(std::initializer_list<const char*> allowed) const {
  expect_object();
  for (auto it = value_->begin(); it != value_->end(); ++it) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || it.key() == a;
    if (ok) continue;
    const std::string list = join(allowed, [](const char* a) { return std::string(a); });
    throw ConfigError(child_path(path_, it.key()) + ": unknown key; expected one of: " + list);
  }
}

double JsonNode::number() const {
  if (!value_->is_number()) wrong_type("a number");
  return value_->get<double>();
}

int64_t JsonNode::integer() const {
  constexpr double kLimit = 9223372036854775807.0;  // 2^63: the doubles beyond it are no int64
  if (value_->is_number_unsigned() && value_->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail("an integer beyond the range of a 64-bit integer");
  if (value_->is_number_integer()) return value_->get<int64_t>();
  if (value_->is_number_float()) {
    const double d = value_->get<double>();
    if (std::floor(d) == d && (d >= kLimit || d < -kLimit)) fail("an integer beyond the range of a 64-bit integer");
    if (std::floor(d) == d) return static_cast<int64_t>(d);
  }
  wrong_type("an integer");
}

bool JsonNode::boolean() const {
  if (!value_->is_boolean()) wrong_type("true or false");
  return value_->get<bool>();
}

std::string JsonNode::string() const {
  if (!value_->is_string()) wrong_type("a string");
  return value_->get<std::string>();
}

std::vector<float> JsonNode::floats() const {
  if (!value_->is_array()) wrong_type("an array of numbers");
  std::vector<float> out;
  for (size_t i = 0; i < value_->size(); ++i) {
    const double v = at(i).number();
    if (std::fabs(v) > std::numeric_limits<float>::max()) at(i).fail("a number beyond the range of a float (3.4e38)");
    out.push_back(static_cast<float>(v));
  }
  return out;
}

std::vector<int64_t> JsonNode::integers() const {
  if (!value_->is_array()) wrong_type("an array of integers");
  std::vector<int64_t> out;
  for (size_t i = 0; i < value_->size(); ++i) out.push_back(at(i).integer());
  return out;
}

std::vector<std::string> JsonNode::strings() const {
  if (!value_->is_array()) wrong_type("an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < value_->size(); ++i) out.push_back(at(i).string());
  return out;
}

double JsonNode::number(const std::string& key, double fallback) const {
  return has(key) ? at(key).number() : fallback;
}
int64_t JsonNode::integer(const std::string& key, int64_t fallback) const {
  return has(key) ? at(key).integer() : fallback;
}
bool JsonNode::boolean(const std::string& key, bool fallback) const { return has(key) ? at(key).boolean() : fallback; }
std::string JsonNode::string(const std::string& key, const std::string& fallback) const {
  return has(key) ? at(key).string() : fallback;
}

nlohmann::json parse_json_text(const std::string& text, const std::string& file) {
  // Nesting beyond any config's is refused before parsing: the parser and every walk over the
  // document recurse, and a file nested a million levels deep would overflow the stack.
  int depth = 0;
  bool in_string = false, escaped = false;
  size_t line = 1;
  for (char ch : text) {
    if (ch == '\n') ++line;
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (ch == '\\')
        escaped = true;
      else if (ch == '"')
        in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > kMaxJsonDepth)
        throw ConfigError(file + ": nested more than " + std::to_string(kMaxJsonDepth) + " levels deep (line " +
                          std::to_string(line) + "); a config needs a handful");
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(file + ": not valid JSON: " + e.what());
  } catch (const nlohmann::json::out_of_range& e) {  // 1e999
    const std::string what = e.what();  // "[json.exception.out_of_range.406] number overflow parsing '1e999'"
    const size_t at = what.find("] ");
    throw ConfigError(file + ": a number beyond the range of a double (" +
                      (at == std::string::npos ? what : what.substr(at + 2)) + ")");
  }
}

nlohmann::json read_json_file(const std::string& file) {
  // A config is a few kilobytes; 1 MiB is room for any (it is copied into every experiment and
  // shown in TensorBoard), and a link to a device or a FIFO is refused, not read forever.
  return parse_json_text(read_small_file(file, kMaxJsonFileBytes, "JSON file"), file);
}

}  // namespace quantlab::config

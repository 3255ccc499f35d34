// A read-only view of one JSON value that knows its path ("treat.optimizer.params.lr"), so every
// error names where it is, what was found and what was expected. Configs are parsed through it
// once, at load time, into typed structs.
#pragma once

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <string>
#include <vector>

namespace quantlab::config {

class JsonNode {
 public:
  JsonNode(const nlohmann::json& value, std::string path);

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return *value_; }

  bool has(const std::string& key) const;     // present and not null
  JsonNode at(const std::string& key) const;  // throws when missing
  JsonNode at(size_t index) const;
  size_t size() const;                    // of an array or object
  std::vector<std::string> keys() const;  // of an object, in file order
  // Throws naming the first key not in `allowed` and listing the allowed ones.
  void allow_keys(std::initializer_list<const char*> allowed) const;

  bool is_null() const { return value_->is_null(); }
  bool is_array() const { return value_->is_array(); }
  bool is_object() const { return value_->is_object(); }
  bool is_number() const { return value_->is_number(); }

  double number() const;
  int64_t integer() const;
  bool boolean() const;
  std::string string() const;
  std::vector<float> floats() const;
  std::vector<int64_t> integers() const;
  std::vector<std::string> strings() const;
  void expect_object() const;

  // Optional members with defaults.
  double number(const std::string& key, double fallback) const;
  int64_t integer(const std::string& key, int64_t fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key, const std::string& fallback) const;

  [[noreturn]] void fail(const std::string& message) const;

 private:
  [[noreturn]] void wrong_type(const char* expected) const;
  const nlohmann::json* value_;
  std::string path_;
};

// Deeper nesting is refused (configs need a handful of levels).
constexpr int kMaxJsonDepth = 64;

// Parses JSON text that came from `file`; errors name the file (and line for syntax errors).
nlohmann::json parse_json_text(const std::string& text, const std::string& file);

// The largest JSON file read (configs, status files): 1 MiB.
constexpr size_t kMaxJsonFileBytes = size_t{1} << 20;

// Reads and parses a JSON file (a regular file of at most kMaxJsonFileBytes); errors name the
// file (and line for syntax errors).
nlohmann::json read_json_file(const std::string& file);

}  // namespace quantlab::config

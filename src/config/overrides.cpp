// Command-line overrides of a config.
#include "quantlab/config/overrides.h"

#include <cctype>

#include "quantlab/util/error.h"

namespace quantlab {
namespace {

const char* type_name(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "a list";
  return "an object";
}

bool same_kind(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_null()) return true;
  if (a.is_number()) return b.is_number();
  return a.type() == b.type();
}

bool is_index(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string keys_of(const nlohmann::json& object) {
  std::string out;
  for (auto it = object.begin(); it != object.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
  return out.empty() ? "none" : out;
}

}  // namespace

std::string dotted(const std::vector<std::string>& path) {
  std::string out;
  for (const auto& p : path) out += (out.empty() ? "" : ".") + p;
  return out;
}

Override parse_override(const std::string& arg) {
  Override o;
  o.text = arg;
  const size_t eq = arg.find('=');
  std::string path = arg.substr(0, eq);
  if (!path.empty() && path[0] == '+') {
    o.add = true;
    path.erase(0, 1);
  }
  if (eq == std::string::npos || path.empty())
    throw ConfigError("--set " + arg + ": expected PATH=VALUE (e.g. treat.optimizer.params.lr=0.003)");
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw ConfigError("--set " + arg + ": an empty step in the path '" + path + "'");
    o.path.push_back(part);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  const std::string text = arg.substr(eq + 1);
  try {
    o.value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    o.value = text;  // not JSON: a string (class names, strategies)
  }
  return o;
}

void apply_overrides(nlohmann::json& config, const std::vector<Override>& overrides) {
  for (const Override& o : overrides) {
    nlohmann::json* node = &config;
    std::vector<std::string> walked;
    for (size_t k = 0; k + 1 < o.path.size(); ++k) {
      const std::string& step = o.path[k];
      walked.push_back(step);
      if (node->is_object() && node->contains(step)) {
        node = &(*node)[step];
      } else if (node->is_array() && is_index(step) && std::stoul(step) < node->size()) {
        node = &(*node)[std::stoul(step)];
      } else {
        const std::string where = walked.size() == 1 ? std::string("the config") : dotted({walked.begin(), walked.end() - 1});
        throw ConfigError("--set " + o.text + ": " + where + " has no " + (node->is_array() ? "element " : "key ") +
                          step +
                          (node->is_object() ? " (keys: " + keys_of(*node) + ")"
                           : node->is_array() ? " (it has " + std::to_string(node->size()) + " elements)"
                                              : " (it is " + std::string(type_name(*node)) + ")"));
      }
    }
    const std::string& last = o.path.back();
    const std::string parent = o.path.size() == 1 ? std::string("the config") : dotted({o.path.begin(), o.path.end() - 1});
    nlohmann::json* target = nullptr;
    if (node->is_array()) {
      if (!is_index(last) || std::stoul(last) >= node->size())
        throw ConfigError("--set " + o.text + ": " + parent + " has no element " + last + " (it has " +
                          std::to_string(node->size()) + ")");
      target = &(*node)[std::stoul(last)];
    } else if (node->is_object()) {
      if (!node->contains(last)) {
        if (!o.add)
          throw ConfigError("--set " + o.text + ": " + parent + " has no key " + last + " (keys: " + keys_of(*node) +
                            "); `--set +" + dotted(o.path) + "=...` adds a key the config does not have");
        (*node)[last] = o.value;
        continue;
      }
      target = &(*node)[last];
    } else {
      throw ConfigError("--set " + o.text + ": " + parent + " is " + type_name(*node) + ", not an object or list");
    }
    if (o.add)
      throw ConfigError("--set " + o.text + ": " + dotted(o.path) + " is in the config already; leave out the +");
    if (!same_kind(*target, o.value))
      throw ConfigError("--set " + o.text + ": " + dotted(o.path) + " is " + type_name(*target) +
                        " in the config, and the value given is " + type_name(o.value) +
                        (o.value.is_string() ? " (values are read as JSON; a string that is not JSON is taken as is)"
                                             : ""));
    *target = o.value;
  }
  if (overrides.empty()) return;
  nlohmann::json& record = config["overrides"];
  if (!record.is_array()) record = nlohmann::json::array();
  for (const Override& o : overrides) record.push_back(o.text);
}

void apply_overrides(nlohmann::json& config, const std::vector<std::string>& args) {
  std::vector<Override> parsed;
  for (const auto& a : args) parsed.push_back(parse_override(a));
  apply_overrides(config, parsed);
}

}  // namespace quantlab

// Command-line overrides of a config.
#include "quantlab/config/overrides.h"

#include <cctype>

#include "quantlab/util/error.h"

namespace quantlab::config {
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
    o.value = text;                                // not JSON: a string (class names, strategies)
  } catch (const nlohmann::json::out_of_range&) {  // 1e999
    throw ConfigError("--set " + arg + ": " + text + " is a number beyond the range of a double");
  }
  return o;
}

namespace {

// Sets o.value at o.path[k..] below `node`, reached by the steps `at` (o.path[0..k) with each "*"
// replaced by the key or index it stands for); a "*" step is every key of an object or every
// element of a list. Returns how many values were set.
size_t apply_at(nlohmann::json& node, const Override& o, size_t k, std::vector<std::string> at) {
  const std::string& step = o.path[k];
  const bool last = k + 1 == o.path.size();
  const std::string here = at.empty() ? std::string("the config") : dotted(at);
  auto below = [&](const std::string& s) {
    std::vector<std::string> p = at;
    p.push_back(s);
    return p;
  };
  if (step == "*") {
    if ((!node.is_object() && !node.is_array()) || node.empty())
      throw ConfigError("--set " + o.text + ": " + here + " is " +
                        (node.empty() && (node.is_object() || node.is_array()) ? std::string("empty")
                                                                               : std::string(type_name(node))) +
                        ", so * matches nothing");
    size_t n = 0, index = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++index) {
      nlohmann::json& child = *it;
      const std::string key = node.is_object() ? it.key() : std::to_string(index);
      if (last) {
        if (!same_kind(child, o.value))
          throw ConfigError("--set " + o.text + ": " + dotted(below(key)) + " is " + type_name(child) +
                            " in the config, and the value given is " + type_name(o.value));
        child = o.value;
        ++n;
      } else {
        n += apply_at(child, o, k + 1, below(key));
      }
    }
    return n;
  }
  if (!last) {
    if (node.is_object() && node.contains(step)) return apply_at(node[step], o, k + 1, below(step));
    if (node.is_array() && is_index(step) && std::stoul(step) < node.size())
      return apply_at(node[std::stoul(step)], o, k + 1, below(step));
    throw ConfigError("--set " + o.text + ": " + here + " has no " + (node.is_array() ? "element " : "key ") + step +
                      (node.is_object()  ? " (keys: " + keys_of(node) + ")"
                       : node.is_array() ? " (it has " + std::to_string(node.size()) + " elements)"
                                         : " (it is " + std::string(type_name(node)) + ")"));
  }
  nlohmann::json* target = nullptr;
  if (node.is_array()) {
    if (!is_index(step) || std::stoul(step) >= node.size())
      throw ConfigError("--set " + o.text + ": " + here + " has no element " + step + " (it has " +
                        std::to_string(node.size()) + ")");
    target = &node[std::stoul(step)];
  } else if (node.is_object()) {
    if (!node.contains(step)) {
      if (!o.add)
        throw ConfigError("--set " + o.text + ": " + here + " has no key " + step + " (keys: " + keys_of(node) +
                          "); `--set +" + dotted(below(step)) + "=...` adds a key the config does not have");
      node[step] = o.value;
      return 1;
    }
    target = &node[step];
  } else {
    throw ConfigError("--set " + o.text + ": " + here + " is " + type_name(node) + ", not an object or list");
  }
  const std::string where = dotted(below(step));
  if (o.add) throw ConfigError("--set " + o.text + ": " + where + " is in the config already; leave out the +");
  if (!same_kind(*target, o.value))
    throw ConfigError(
        "--set " + o.text + ": " + where + " is " + type_name(*target) + " in the config, and the value given is " +
        type_name(o.value) +
        (o.value.is_string() ? " (values are read as JSON; a string that is not JSON is taken as is)" : ""));
  *target = o.value;
  return 1;
}

}  // namespace

void apply_overrides(nlohmann::json& config, const std::vector<Override>& overrides) {
  for (const Override& o : overrides) apply_at(config, o, 0, {});
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

}  // namespace quantlab::config

// String helpers for messages: the one place lists of names are joined.
#pragma once

#include <string>
#include <vector>

namespace quantlab {

// "a, b, c" (or with another separator); an empty list gives "".
inline std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// join() over any range, each element turned into text by `text`.
template <typename Range, typename ToText>
std::string join(const Range& items, ToText text, const std::string& sep = ", ") {
  std::vector<std::string> names;
  for (const auto& item : items) names.push_back(text(item));
  return join(names, sep);
}

}  // namespace quantlab

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

// The pieces of `text` between `sep`s ("a;b" -> {"a", "b"}); an empty text gives {}.
inline std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  size_t from = 0;
  for (size_t at = text.find(sep); at != std::string::npos; at = text.find(sep, from)) {
    out.push_back(text.substr(from, at - from));
    from = at + 1;
  }
  out.push_back(text.substr(from));
  return out;
}

// The first line of `text` (all of it if it has one): libtorch's messages go on with a backtrace
// or the C++ call that raised them, which a one-line report leaves out.
inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// A word the shell reads back as it is (in a command printed for the user to copy): quoted when it
// holds anything but plain characters.
inline std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of(
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789_./:,+-=@%") == std::string::npos;
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace quantlab

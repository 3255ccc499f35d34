// A string-keyed registry of factories: every configurable family (topology, optimizer, lr
// scheduler, loss, timer) is looked up through one, and an unknown name lists the known ones.
// To extend a family, add one `add("Name", factory)` line where its registry is built.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "quantlab/util/error.h"

namespace quantlab {

template <typename Factory>
class Registry {
 public:
  explicit Registry(std::string family) : family_(std::move(family)) {}

  Registry& add(const std::string& name, Factory factory) {
    factories_.emplace(name, std::move(factory));
    return *this;
  }

  bool contains(const std::string& name) const { return factories_.count(name) > 0; }

  // `where` is the JSON path or flag the name came from, for the message.
  const Factory& at(const std::string& name, const std::string& where) const {
    auto it = factories_.find(name);
    if (it == factories_.end())
      throw ConfigError(where + ": unknown " + family_ + " '" + name + "'; known: " + known());
    return it->second;
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : factories_) out.push_back(kv.first);
    return out;
  }

  std::string known() const {
    std::string out;
    for (const auto& kv : factories_) out += (out.empty() ? "" : ", ") + kv.first;
    return out;
  }

 private:
  std::string family_;
  std::map<std::string, Factory> factories_;
};

}  // namespace quantlab

// A string-keyed registry of factories: every configurable family (topology, optimizer, lr
// scheduler, loss, timer) is looked up through one, and an unknown name lists the known ones.
// To extend a family, add one `add("Name", factory)` line where its registry is built (topologies
// register from their own files: topology/network.h).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab {

template <typename Factory>
class Registry {
 public:
  explicit Registry(std::string family) : family_(std::move(family)) {}

  // A name registered twice is a programming error.
  Registry& add(const std::string& name, Factory factory) {
    if (!factories_.emplace(name, std::move(factory)).second)
      throw std::logic_error(family_ + " '" + name + "' registered twice");
    return *this;
  }

  // `where` is the JSON path or flag the name came from, for the message.
  const Factory& at(const std::string& name, const std::string& where) const {
    auto it = factories_.find(name);
    if (it == factories_.end())
      throw ConfigError(where + ": unknown " + family_ + " '" + name + "'; known: " + known());
    return it->second;
  }

  std::string known() const {
    return join(factories_, [](const auto& kv) { return kv.first; });
  }

 private:
  std::string family_;
  std::map<std::string, Factory> factories_;
};

}  // namespace quantlab

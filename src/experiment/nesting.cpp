// Nesting check of pickled values: one iterative walk, and the values that fail it left unreleased.
#include "nesting.h"

#include <unordered_map>
#include <utility>

#include "quantlab/experiment/torch_file.h"
#include "quantlab/util/error.h"

namespace quantlab::experiment {

using c10::IValue;

// Whether a value under `roots` nests containers deeper than the limit. Iteratively, as deep as it
// goes: a container is walked again only when reached deeper than before (a shared one once per
// depth, a container inside itself until the limit).
bool nests_too_deep(const std::vector<const IValue*>& roots) {
  std::unordered_map<const void*, int> reached;
  std::vector<std::pair<const IValue*, int>> pending;
  for (const IValue* r : roots) pending.emplace_back(r, 0);
  while (!pending.empty()) {
    const auto [x, depth] = pending.back();
    pending.pop_back();
    if (!x->isList() && !x->isGenericDict() && !x->isTuple()) continue;
    if (depth > kNestingLimit) return true;
    const auto [at, fresh] = reached.emplace(x->internalToPointer(), depth);
    if (!fresh && at->second >= depth) continue;
    at->second = depth;
    if (x->isList()) {
      for (const IValue& e : x->toListRef()) pending.emplace_back(&e, depth + 1);
    } else if (x->isTuple()) {
      for (const IValue& e : x->toTupleRef().elements()) pending.emplace_back(&e, depth + 1);
    } else {
      for (const auto& kv : x->toGenericDict()) {
        pending.emplace_back(&kv.key(), depth + 1);
        pending.emplace_back(&kv.value(), depth + 1);
      }
    }
  }
  return false;
}

[[noreturn]] void throw_too_deep(const std::string& file) {
  throw IoError(file + ": cannot read this file (containers nested deeper than " + std::to_string(kNestingLimit) +
                ", or a container inside itself: not a file torch.save writes)");
}

void abandon_too_deep(c10::IValue& v, const std::string& file) {
  new IValue(std::move(v));  // NOLINT(cppcoreguidelines-owning-memory): left unreleased, see the header
  throw_too_deep(file);
}

void check_nesting(c10::IValue& v, const std::string& file) {
  if (nests_too_deep({&v})) abandon_too_deep(v, file);
}

}  // namespace quantlab::experiment

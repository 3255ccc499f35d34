// The nesting check of values read from pickles (torch.save files, checkpoints): a hand-made pickle
// can nest lists a million deep or put a list inside itself, and walking or releasing such a value
// recurses past the stack. check_nesting (torch_file.h) is the public side.
#pragma once

#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

namespace quantlab::experiment {

constexpr int kNestingLimit = 64;

// Whether a value under `roots` nests containers (lists, dicts, tuples) deeper than kNestingLimit or
// holds one inside itself. Iterative: it does not recurse however deep the value goes.
bool nests_too_deep(const std::vector<const c10::IValue*>& roots);

// Throws IoError naming `file` as too deeply nested to read.
[[noreturn]] void throw_too_deep(const std::string& file);

// Moves `v`, found too deep, onto the heap and leaves it there unreleased (releasing it would
// recurse past the stack), then throws as throw_too_deep.
[[noreturn]] void abandon_too_deep(c10::IValue& v, const std::string& file);

}  // namespace quantlab::experiment

// Files written by Python's torch.save, read without Python: the zip container with a pickle
// (protocols 2 to 5) of dicts, ordered dicts, lists, tuples, numbers, strings and tensors, and each
// tensor's storage as a record of the zip. The checkpoints of the original QuantLab and files
// re-saved from Python are such files; libtorch's own unpickler cannot read all of them (it lacks
// the opcodes Python uses for one-element lists and dicts).
// Values come back as libtorch IValues: dicts as GenericDict (keys of any type, in file order),
// lists as GenericList, tuples as Tuple, tensors on the CPU. Any other Python object is an error
// naming its class.
#pragma once

#include <ATen/core/ivalue.h>

#include <string>
#include <vector>

namespace quantlab::experiment {

// Throws IoError naming the file when it is not a torch.save zip file or holds what cannot be read.
c10::IValue read_torch_file(const std::string& file);

// Throws IoError naming `file` when `v` nests containers deeper than 64 or holds a container
// inside itself (a hand-made pickle can build either): walking or releasing such a value would
// recurse past the stack. Such a value is never released (its memory is left to the process).
void check_nesting(c10::IValue& v, const std::string& file);

// The bytes of a torch.save file holding `v` (dicts, lists, numbers, strings, tensors) as plain
// Python containers: no TorchScript type tags, so PyTorch's torch.load reads it with its default
// weights_only=True (PyTorch 2.6 and later) as well as libtorch's pickle_load. (torch::pickle_save
// tags typed dicts and lists with torch.jit._pickle.restore_type_tag, which weights_only refuses.)
std::vector<char> plain_torch_save(const c10::IValue& v);

}  // namespace quantlab::experiment

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

namespace quantlab {

// Throws IoError naming the file when it is not a torch.save zip file or holds what cannot be read.
c10::IValue read_torch_file(const std::string& file);

}  // namespace quantlab

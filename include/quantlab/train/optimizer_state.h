// The optimizer's state in a checkpoint, read whichever libtorch wrote it. libtorch saves an
// optimizer as a serialize archive whose entries are keyed by each parameter's address as text:
// hexadecimal in 1.x ("0x55d3..."), decimal in 2.x. libtorch 2.x's own loader parses keys as
// decimal, so it reads every 1.x key as 0 and gives all parameters the state of one. This loader
// matches states to parameters by the saved key in either form, through the archive's own types.
#pragma once

#include <torch/torch.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace quantlab::train {

// Loads what `opt.save()` wrote (any libtorch) into `opt`: per-parameter state and each param
// group's options. SGD, Adam, AdamW, Adagrad and RMSprop; another optimizer falls back to its own
// load(). Throws c10::Error on an archive of another optimizer or size.
void load_optimizer_state(torch::optim::Optimizer& opt, torch::serialize::InputArchive& archive);

// State that a setting switched on since the state was saved needs and does not hold (Adam's and
// AdamW's amsgrad, RMSprop's momentum or centering): zeros, as a new optimizer's. libtorch's own
// steps would read the missing tensor.
void fill_missing_state(torch::optim::Optimizer& opt);

// The key of parameter `p` in `opt.state()`: its TensorImpl's address, as text in libtorch 1.x
// (c10::guts::to_string) and as the pointer itself in 2.x. A template so that only the branch of
// this libtorch's key type is compiled.
template <typename Optim>
auto optimizer_state_key(const Optim& opt, const torch::Tensor& p) {
  using Key = typename std::decay_t<decltype(opt.state())>::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace quantlab::train

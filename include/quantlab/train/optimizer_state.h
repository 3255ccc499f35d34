// The optimizer's state in a checkpoint, read whichever libtorch wrote it. libtorch saves an
// optimizer as a serialize archive whose entries are keyed by each parameter's address as text:
// hexadecimal in 1.x ("0x55d3..."), decimal in 2.x. libtorch 2.x's own loader parses keys as
// decimal, so it reads every 1.x key as 0 and gives all parameters the state of one. This loader
// matches states to parameters by the saved key in either form, through the archive's own types.
#pragma once

#include <torch/torch.h>

namespace quantlab::train {

// Loads what `opt.save()` wrote (any libtorch) into `opt`: per-parameter state and each param
// group's options. SGD, Adam, AdamW, Adagrad and RMSprop; another optimizer falls back to its own
// load(). Throws c10::Error on an archive of another optimizer or size.
void load_optimizer_state(torch::optim::Optimizer& opt, torch::serialize::InputArchive& archive);

}  // namespace quantlab::train

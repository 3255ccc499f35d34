// Checks that an experiment and its data fit together, made before any experiment folder is
// created, so that a mismatch stops the run at once with the file, key and value at fault instead
// of a libtorch message after training started:
//   - the test images have the shape of the training images;
//   - the network accepts those images (one forward pass of two samples, in evaluation mode, which
//     changes no state and draws no random number);
//   - every label of the training and test sets is a valid index into the network's outputs;
//   - the loss function accepts the network's outputs (e.g. HingeLoss's num_classes).
#pragma once

#include "quantlab/data/problem.h"
#include "quantlab/train/experiment.h"

namespace quantlab::train {

// Throws ConfigError (a key of the config) or IoError (a data file) on the first mismatch.
void preflight(Experiment& exp, const data::ProblemData& data);

}  // namespace quantlab::train

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

// Training only: no process gets a training batch of one image where the network has a
// BatchNorm1d, which cannot normalise one value per feature in training (libtorch's error after a
// whole epoch otherwise). `train_images`: the training set's size; `processes`: the ranks that
// share every batch (data::rank_shard); `held_out`: the validation images are held out of the
// training files (IDX, CIFAR: treat.data.valid_fraction changes the count). Throws ConfigError
// naming treat.data.
void check_training_batches(Experiment& exp, int64_t train_images, int processes, bool held_out = true);

// The name of the network's first BatchNorm1d ("" when it has none): a training batch of one image
// is one it cannot train on.
std::string first_batch_norm_1d(Experiment& exp);

}  // namespace quantlab::train

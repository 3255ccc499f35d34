// Transfer: tensors of a trained network copied into a new experiment's network before it trains
// (indiv.net.pretrained, topology/network.h), as the original's load_pretrained:
//   {"file": NAME}                    <home>/<Problem>/<Topology>/pretrained/NAME (a path with '/'
//                                     is used as it is)
//   {"file": {"exp_id": N, "epoch": E}} or {"exp_id": N, "epoch": E}
//                                     a checkpoint of experiment N of the problem (E: best, last or
//                                     an epoch number; default best)
//   "parameters" (or "prefixes"): the name prefixes to copy; all names when absent. Batch-norm
//   counters (num_batches_tracked) are never copied, as the original.
// The file may be a QuantLab checkpoint, a checkpoint of the original QuantLab
// ({"indiv": {"net": state_dict}, ...}) or a plain state dict saved with torch.save.
#pragma once

#include <map>
#include <string>

#include <torch/torch.h>

#include "quantlab/experiment/storage.h"
#include "quantlab/train/experiment.h"

namespace quantlab::experiment {

// The network tensors by name of any of the files above. Throws IoError naming the file.
std::map<std::string, torch::Tensor> read_network_tensors(const std::string& file);

// Where `spec` points for the problem at `paths` with topology family `topology`.
std::string pretrained_file(const topology::PretrainedSpec& spec, const ProblemPaths& paths,
                            const std::string& topology);

// Copies the tensors; returns how many. Throws ConfigError (indiv.net.pretrained...) when a shape
// differs or nothing matches.
int64_t apply_pretrained(train::Experiment& exp, const ProblemPaths& paths);

}  // namespace quantlab::experiment

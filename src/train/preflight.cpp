// Preflight checks of an experiment against its data.
#include "quantlab/train/preflight.h"

#include <sstream>
#include <tuple>

#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::train {
namespace {

std::string shape_text(const torch::Tensor& x) {  // of one sample: [C, H, W]
  return c10::str(x.sizes().slice(1));
}

constexpr int64_t kSampleTries = 64;

// `n` readable samples from the first of `set` (an unreadable image is skipped, as in training,
// with its warning: a folder copied from macOS starts with its ._ files), up to kSampleTries read.
data::Batch sample_batch(const data::Dataset& set, int64_t n) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < std::min<int64_t>(n, set.size()); ++i) idx.push_back(i);
  data::Batch b = set.make_batch(idx.data(), static_cast<int64_t>(idx.size()), 0, data::SampleContext{false, 0, 0});
  if (b.inputs.size(0) == static_cast<int64_t>(idx.size())) return b;
  for (int64_t i = static_cast<int64_t>(idx.size()); i < std::min(kSampleTries, set.size()); ++i) idx.push_back(i);
  b = set.make_batch(idx.data(), static_cast<int64_t>(idx.size()), 0, data::SampleContext{false, 0, 0});
  const int64_t kept = std::min(n, b.inputs.size(0));
  return {b.inputs.narrow(0, 0, kept), b.labels.narrow(0, 0, kept)};
}

void check_labels(const data::Dataset& set, const char* which, int64_t outputs) {
  const auto labels = set.labels();
  if (labels.numel() == 0) return;
  const auto bad = (labels < 0).logical_or(labels >= outputs).nonzero();
  if (bad.numel() == 0) return;
  const int64_t i = bad[0][0].item<int64_t>();
  throw IoError(set.source(i) + ": label " + std::to_string(labels[i].item<int64_t>()) + " of " + which + " sample " +
                std::to_string(i) + " is not a class of a network with " + std::to_string(outputs) +
                " outputs (classes 0.." + std::to_string(outputs - 1) +
                "); the data has more classes than indiv.net.params.num_classes, or the label file is corrupt");
}

}  // namespace

void preflight(Experiment& exp, const data::ProblemData& data) {
  if (data.train->size() == 0) throw IoError("the training set is empty (" + data.format + ")");
  if (data.train_indices.empty())
    throw ConfigError("treat.data.valid_fraction: " + std::to_string(exp.data.valid_fraction) + " holds out all " +
                      std::to_string(data.valid_indices.size()) +
                      " training images for validation, and no image is left to train on");
  if (data.test->size() == 0) throw IoError("the test set is empty (" + data.format + "): nothing to measure a run on");
  const data::Batch train = sample_batch(*data.train, 2);
  const data::Batch test = sample_batch(*data.test, 1);
  for (const auto& [batch, set, which] :
       {std::tuple{&train, data.train.get(), "training"}, std::tuple{&test, data.test.get(), "test"}})
    if (batch->inputs.size(0) == 0)
      throw IoError("none of the first " + std::to_string(std::min(kSampleTries, set->size())) + " " + which +
                    " images could be read (" + set->input_source(0) +
                    (set->size() > 1 ? " ... " + set->input_source(std::min(kSampleTries, set->size()) - 1) : "") +
                    "; the warnings above say why)");
  if (train.inputs.sizes().slice(1) != test.inputs.sizes().slice(1))
    throw IoError(data.test->input_source(0) + ": test images are " + shape_text(test.inputs) + ", training images (" +
                  data.train->input_source(0) + ") are " + shape_text(train.inputs) +
                  "; both sets must have one shape");
  torch::Tensor scores;
  {
    const bool was_training = exp.net->is_training();
    exp.net->eval();
    torch::NoGradGuard no_grad;
    try {
      scores = exp.net->forward(train.inputs.to(exp.device));
    } catch (const c10::Error& e) {
      exp.net->train(was_training);
      throw ConfigError("indiv.net: a " + exp.net_spec.cls + " does not accept this data's inputs " +
                        shape_text(train.inputs) + " (" + data.format + ", from " + data.train->input_source(0) +
                        "): " + first_line(e.what_without_backtrace()));
    }
    exp.net->train(was_training);
  }
  if (scores.dim() != 2) throw ConfigError("indiv.net: the network gives scores of shape " + c10::str(scores.sizes()));
  const int64_t outputs = scores.size(1);
  check_labels(*data.train, "training", outputs);
  check_labels(*data.test, "test", outputs);
  try {
    torch::NoGradGuard no_grad;
    (void)exp.loss(scores, train.labels.to(exp.device));
  } catch (const c10::Error& e) {
    throw ConfigError("indiv.loss_function: " + first_line(e.what_without_backtrace()));
  }
}

std::string first_batch_norm_1d(Experiment& exp) {
  for (const auto& item : exp.net->named_modules("", false))
    if (item.value()->as<torch::nn::BatchNorm1d>() != nullptr) return item.key();
  return "";
}

void check_training_batches(Experiment& exp, int64_t train_images, int processes, bool held_out) {
  const std::string bn = first_batch_norm_1d(exp);
  if (bn.empty()) return;
  const int64_t batch = exp.data.bs_train, n = train_images;
  // Every full batch is shared alike: the first batch and the last are all there is to check.
  for (const int64_t start : {int64_t{0}, (n - 1) / batch * batch}) {
    const int64_t len = std::min(batch, n - start);
    for (int r = 0; r < processes; ++r) {
      if (len * (r + 1) / processes - len * r / processes != 1) continue;
      const bool last = start + len >= n;
      std::ostringstream why;
      why << "treat.data: " << (processes > 1 ? "a process's share of " : "") << (last ? "the last" : "every")
          << " training batch holds 1 image (" << n << " training images in batches of " << batch
          << (processes > 1 ? " shared by " + std::to_string(processes) + " processes" : std::string())
          << "), and batch norm (" << bn
          << ") cannot normalise a single value per feature in training; change treat.data.bs_train"
          << (last && held_out ? " or treat.data.valid_fraction" : "")
          << (processes > 1 ? ", or the number of processes" : "");
      throw ConfigError(why.str());
    }
  }
}

}  // namespace quantlab::train

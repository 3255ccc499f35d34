// The export's parity check: the integer runtime against the network's float evaluation
// (--mode=test's), image by image on the test set. A disagreement is shown with the first layer
// where the two differ: the integer accumulator and threshold, and the float value and threshold,
// so a rounding tie of the float evaluation is told from a defect.
#pragma once

#include <string>
#include <vector>

#include "quantlab/data/problem.h"
#include "quantlab/runtime/engine.h"
#include "quantlab/train/experiment.h"

namespace quantlab::export_ {

struct Disagreement {
  int64_t image = 0;
  int64_t float_label = 0, integer_label = 0;
  std::string layer;  // the first threshold layer whose output differs
  int64_t channel = 0, position = 0;
  double accumulator = 0;      // the runtime's input to that threshold layer there
  std::string thresholds;      // the runtime's thresholds of that channel
  double float_value = 0;      // the float network's batch-norm output there
  double float_threshold = 0;  // the stair threshold (+ mu) it is compared with
  bool tie = false;            // within float rounding of the threshold
  std::string text() const;
};

struct ParityReport {
  int64_t images = 0, agree = 0;
  double float_accuracy = 0, integer_accuracy = 0;
  double float_seconds_1 = 0, float_seconds_all = 0;  // libtorch evaluation, 1 thread / all threads
  double integer_seconds_1 = 0, integer_seconds_all = 0;
  int threads = 1;
  std::vector<Disagreement> disagreements;
};

// Evaluates both on the whole test set (timing each on 1 thread and on `threads`).
ParityReport check_parity(train::Experiment& exp, const data::ProblemData& data, const runtime::Engine& engine,
                          int threads);

}  // namespace quantlab::export_

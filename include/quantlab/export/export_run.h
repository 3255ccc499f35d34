// `quantlab export` and `quantlab infer` as library calls (the command line only parses flags):
//   export: a trained experiment's checkpoint -> an integer model file (.qlm, for the runtime) or an
//           ONNX model, then the parity check of the integer runtime against the float network on
//           the whole test set (docs/EXPORT.md);
//   infer:  an exported model on a problem's test set with the integer runtime: accuracy, images/s.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "quantlab/export/parity.h"

namespace quantlab::export_ {

struct ExportOptions {
  std::string problem, home = ".", data;
  int64_t exp_id = -1;
  std::string load = "best";
  std::string format = "qlm";  // "qlm" (the integer runtime's) or "onnx"
  std::string out;             // default: <experiment>/export/<class>_<load>.<format>
  bool check = true;           // the parity check
  int threads = 0;
};

struct ExportResult {
  std::string file;
  uint64_t file_bytes = 0, float_weight_bytes = 0, checkpoint_bytes = 0;
  std::optional<ParityReport> parity;
};

ExportResult run_export(const ExportOptions& o, std::ostream& out);

struct InferOptions {
  std::string model, problem, home = ".", data;
  int threads = 0;
  std::string labels_out;  // a file to write the predicted labels to, one per line
};

void run_infer(const InferOptions& o, std::ostream& out);

}  // namespace quantlab::export_

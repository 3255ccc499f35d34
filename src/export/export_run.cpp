// quantlab export / infer.
#include "quantlab/export/export_run.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/checkpoint_ref.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/export/exporter.h"
#include "quantlab/export/onnx.h"
#include "quantlab/runtime/engine.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

ExportResult run_export(const ExportOptions& o, std::ostream& out) {
  if (o.problem.empty()) throw Error("export needs --problem");
  if (o.exp_id < 0) throw Error("export needs --exp_id (the experiment whose checkpoint to export)");
  if (o.format != "qlm" && o.format != "onnx") throw Error("--format='" + o.format + "': expected qlm or onnx");
  const CheckpointRef ref = CheckpointRef::parse(o.load, "--load");
  configure_runtime(o.threads);
  const Storage storage = read_storage(o.home);
  const ProblemPaths paths = problem_paths(storage, o.problem);
  const Logbook book = Logbook::open(paths.logs, o.exp_id);
  Experiment exp(book.config(), "", torch::kCPU);
  if (!has_quantized_layers(exp))
    throw Error(exp.net_spec.cls + " is a float network: there is nothing to integerise, and nothing was written");
  const std::string ckpt = Session::checkpoint_file(book, ref);
  const Checkpoint c = load_checkpoint(ckpt);
  restore(exp, c);
  const std::string dir = data::find_data_dir(storage.home, o.problem, o.data);
  const data::ProblemData data = data::load_problem(dir, exp.data);
  const std::string source = "experiment " + std::to_string(book.id()) + ", " + ref.file_name() + " (after epoch " +
                             std::to_string(c.state.epoch) + ")";
  const runtime::Model model = export_model(exp, export_input(exp, data), o.problem, source);
  ExportResult r;
  r.file = o.out.empty() ? book.dir() + "/export/" + exp.net_spec.cls + "_" + ref.text() + "." + o.format : o.out;
  std::error_code ec;
  if (fs::path(r.file).has_parent_path()) fs::create_directories(fs::path(r.file).parent_path(), ec);
  if (o.format == "qlm") runtime::save_model(r.file, model);
  else write_onnx(model, r.file);
  r.file_bytes = fs::file_size(r.file);
  r.checkpoint_bytes = fs::file_size(ckpt);
  for (const auto& p : exp.net->parameters()) r.float_weight_bytes += static_cast<uint64_t>(p.numel()) * 4;
  int integer_layers = 0, float_layers = 0;
  for (const auto& l : model.layers)
    if (l.kind == runtime::LayerKind::kConv || l.kind == runtime::LayerKind::kLinear) (l.float_input ? float_layers : integer_layers)++;
  out << "wrote " << r.file << ": " << model.net_class << " of " << source << ", " << integer_layers
      << " integer layers" << (float_layers ? ", " + std::to_string(float_layers) + " float (on the normalised image)" : "")
      << "; " << r.file_bytes << " bytes, " << fixed(static_cast<double>(r.float_weight_bytes) / r.file_bytes, 1)
      << "x smaller than the float weights (" << r.float_weight_bytes << " bytes) and "
      << fixed(static_cast<double>(r.checkpoint_bytes) / r.file_bytes, 1) << "x smaller than the checkpoint" << std::endl;
  if (!o.check) return r;
  out << "parity check on the " << data.test->size() << " test images..." << std::flush;
  const runtime::Engine engine(model);
  r.parity = check_parity(exp, data, engine, o.threads);
  const ParityReport& p = *r.parity;
  out << " " << p.agree << " of " << p.images << " labels agree; accuracy: float " << fixed(p.float_accuracy, 2)
      << "%, integer " << fixed(p.integer_accuracy, 2) << "%" << std::endl;
  int ties = 0;
  for (const auto& d : p.disagreements) ties += d.tie;
  if (!p.disagreements.empty())
    out << p.disagreements.size() << " disagreements, " << ties << " of them rounding ties of the float evaluation:"
        << std::endl;
  for (size_t i = 0; i < p.disagreements.size() && i < 20; ++i) out << "  " << p.disagreements[i].text() << std::endl;
  auto rate = [&](double s) { return fixed(static_cast<double>(p.images) / s, 0); };
  out << "images/s, 1 thread: float (libtorch) " << rate(p.float_seconds_1) << ", integer " << rate(p.integer_seconds_1)
      << "; " << p.threads << " threads: float " << rate(p.float_seconds_all) << ", integer "
      << rate(p.integer_seconds_all) << std::endl;
  return r;
}

void run_infer(const InferOptions& o, std::ostream& out) {
  const runtime::Engine engine(runtime::load_model(o.model));
  std::string dir = o.data;
  if (dir.empty()) {
    if (o.problem.empty()) throw Error("infer needs --problem (or --data)");
    dir = data::find_data_dir(read_storage(o.home).home, o.problem, "");
  }
  if (!o.problem.empty() && o.problem != engine.model().problem)
    throw Error(o.model + " was exported for " + engine.model().problem + ", not for " + o.problem);
  const runtime::Images images = runtime::read_test_images(dir);
  const runtime::Evaluation e = runtime::evaluate(engine, images, o.threads);
  out << engine.model().net_class << " (" << engine.model().source << ") on " << images.count << " " << images.format
      << " test images of " << dir << ": accuracy " << fixed(e.accuracy(), 2) << "%, " << fixed(e.images_per_second(), 0)
      << " images/s on " << e.threads << " threads" << std::endl;
  if (!o.labels_out.empty()) {
    std::ofstream f(o.labels_out);
    for (int64_t l : e.labels) f << l << "\n";
    if (!f) throw IoError(o.labels_out + ": cannot write the labels");
  }
}

}  // namespace quantlab

// quantlab export / infer.
#include "quantlab/export/export_run.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/export/exporter.h"
#include "quantlab/export/onnx.h"
#include "quantlab/runtime/engine.h"
#include "quantlab/util/error.h"
#include "quantlab/util/files.h"
#include "quantlab/util/runtime.h"

namespace quantlab::export_ {
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
  const config::CheckpointRef ref = config::CheckpointRef::parse(o.load, "--load");
  if (!o.out.empty()) {  // before any work
    const std::string other = o.format == "qlm" ? ".onnx" : ".qlm";
    if (o.out.size() >= other.size() && o.out.compare(o.out.size() - other.size(), other.size(), other) == 0)
      throw Error("--out=" + o.out + ": a " + other + " name for --format=" + o.format + " (" + o.format +
                  " bytes under that name would be refused as a " + other.substr(1) + " model); name it ." + o.format +
                  ", or give --format=" + other.substr(1));
    require_new_file("--out", o.out);
  }
  configure_runtime(o.threads);
  const experiment::Storage storage = experiment::read_storage(o.home);
  const experiment::ProblemPaths paths = experiment::problem_paths(storage, o.problem);
  const experiment::Logbook book = experiment::Logbook::open(paths.logs, o.exp_id);
  train::Experiment exp(book.config(), "", torch::kCPU);
  if (!has_quantized_layers(exp))
    throw Error(exp.net_spec.cls + " is a float network: there is nothing to integerise, and nothing was written");
  const std::string ckpt = book.saves().file(ref);
  const experiment::Checkpoint c = experiment::load_checkpoint(ckpt);
  for (const auto& [name, t] : c.net)
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
      throw Error(ckpt + ": " + name +
                  " holds values that are not finite (NaN or infinite): the training diverged; "
                  "there is no network to export, and nothing was written");
  experiment::restore(exp, c, false);  // the weights; no optimizer is needed
  const std::string dir =
      data::find_data_dir(storage.home, o.problem, o.data, storage.data_root + "/" + o.problem + "/data");
  const data::ProblemData data = data::load_problem(dir, exp.data);
  const std::string source = "experiment " + std::to_string(book.id()) + ", " + fs::path(ckpt).filename().string() +
                             " (after epoch " + std::to_string(c.state.epoch) + ")";
  const runtime::Model model = export_model(exp, export_input(exp, data), o.problem, source);
  // The input's shape is the data's, not the network's: data of another problem gives a model
  // whose first layer does not fit, which the runtime would refuse to load. Refused here, before
  // the parity check and before anything is written.
  try {
    runtime::check_layer_shapes(model);
  } catch (const IoError& e) {
    const runtime::InputSpec& in = model.input;
    throw Error(
        "the " + data.format + " images in " + dir + (o.data.empty() ? "" : " (--data)") + " are " +
        std::to_string(in.channels) + "x" + std::to_string(in.height) + "x" + std::to_string(in.width) +
        ", which the network of " + source + " does not take (" + e.what() + "); " +
        (o.data.empty() ? "put " + o.problem + "'s own data there" : "point --data at " + o.problem + "'s data") +
        " (the images it was trained on); nothing was written");
  }
  // ONNX's limits that do not depend on the data, also before the parity check.
  if (o.format == "onnx") check_onnx_layers(model);
  // Thresholds may be infinite (a zero batch-norm scale: the level is always or never reached),
  // never NaN; scales and shifts must be finite.
  for (const auto& l : model.layers) {
    for (double x : l.float_thresholds)
      if (std::isnan(x))
        throw Error("layer " + l.name + " of " + source +
                    " folds into thresholds that are not numbers (an infinite batch-norm scale?); nothing was written");
    for (const auto* v : {&l.scale, &l.shift})
      for (double x : *v)
        if (!std::isfinite(x))
          throw Error("layer " + l.name + " of " + source +
                      " folds into a scale or shift that is not finite (an infinite batch-norm scale?); nothing was "
                      "written");
  }
  // The parity check before anything is written: a model whose labels differ from the network's
  // beyond rounding ties is a defect of the export, never a file.
  ExportResult r;
  if (o.check) {
    out << "parity check on the " << data.test->size() << " test images..." << std::flush;
    const runtime::Engine engine(model);
    r.parity = check_parity(exp, data, engine, o.threads);
    const ParityReport& p = *r.parity;
    out << " " << p.agree << " of " << p.images << " labels agree; accuracy: float " << fixed(p.float_accuracy, 2)
        << "%, integer " << fixed(p.integer_accuracy, 2) << "%" << std::endl;
    int ties = 0;
    for (const auto& d : p.disagreements) ties += d.tie;
    if (!p.disagreements.empty())
      out << p.disagreements.size() << " disagreements, " << ties
          << " of them rounding ties of the float evaluation:" << std::endl;
    for (size_t i = 0; i < p.disagreements.size() && i < 20; ++i) out << "  " << p.disagreements[i].text() << std::endl;
    auto rate = [&](double s) { return fixed(static_cast<double>(p.images) / s, 0); };
    out << "images/s, 1 thread: float (libtorch) " << rate(p.float_seconds_1) << ", integer "
        << rate(p.integer_seconds_1) << "; " << p.threads << " threads: float " << rate(p.float_seconds_all)
        << ", integer " << rate(p.integer_seconds_all) << std::endl;
    const size_t defects = p.disagreements.size() - static_cast<size_t>(ties);
    if (defects > 0)
      throw Error("the parity check found " + std::to_string(defects) +
                  " labels that differ from the network's beyond rounding ties: the integer model of " + source +
                  " does not compute what the network computes (a defect of the export; please report it with the "
                  "experiment's config); nothing was written");
  }
  r.file = o.out.empty() ? book.dir() + "/export/" + exp.net_spec.cls + "_" + ref.text() + "." + o.format : o.out;
  // The default place is the experiment's own export/ folder, where a new export replaces an old
  // one; a --out file is never written over anything.
  if (o.out.empty()) {
    std::error_code ec;
    fs::create_directories(fs::path(r.file).parent_path(), ec);
    if (ec)
      throw IoError(fs::path(r.file).parent_path().string() + ": cannot create the folder (" + ec.message() + ")");
  }
  const std::string tmp = temporary_beside(r.file);
  try {
    if (o.format == "qlm")
      runtime::save_model(tmp, model);
    else
      write_onnx(model, tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  publish_file(tmp, r.file, /*replace=*/o.out.empty());
  r.file_bytes = fs::file_size(r.file);
  r.checkpoint_bytes = fs::file_size(ckpt);
  for (const auto& p : exp.net->parameters()) r.float_weight_bytes += static_cast<uint64_t>(p.numel()) * 4;
  int integer_layers = 0, on_image = 0, float_layers = 0;
  for (const auto& l : model.layers)
    if (l.kind == runtime::LayerKind::kConv || l.kind == runtime::LayerKind::kLinear)
      (!l.float_weights.empty() ? float_layers : l.float_input ? on_image : integer_layers)++;
  out << "wrote " << r.file << ": " << model.net_class << " of " << source << ", " << integer_layers
      << " integer layers" << (on_image ? ", " + std::to_string(on_image) + " float (on the normalised image)" : "")
      << (float_layers ? ", " + std::to_string(float_layers) + " float layers (float weights)" : "") << "; "
      << r.file_bytes << " bytes, " << fixed(static_cast<double>(r.float_weight_bytes) / r.file_bytes, 1)
      << "x smaller than the float weights (" << r.float_weight_bytes << " bytes) and "
      << fixed(static_cast<double>(r.checkpoint_bytes) / r.file_bytes, 1) << "x smaller than the checkpoint"
      << std::endl;
  return r;
}

void run_infer(const InferOptions& o, std::ostream& out) {
  if (!o.labels_out.empty()) require_new_file("--labels", o.labels_out);
  const runtime::Engine engine(runtime::load_model(o.model));
  // The model's problem before its data: another problem's missing data is not the error.
  if (!o.problem.empty() && o.problem != engine.model().problem)
    throw Error(o.model + " was exported for " + engine.model().problem + ", not for " + o.problem);
  std::string dir = o.data;
  if (dir.empty()) {
    if (o.problem.empty()) throw Error("infer needs --problem (or --data)");
    const experiment::Storage storage = experiment::read_storage(o.home);
    dir = data::find_data_dir(storage.home, o.problem, "", storage.data_root + "/" + o.problem + "/data");
  }
  // An empty set and labels that are not the model's classes are refused by evaluate (shared with
  // quantlab-infer).
  const runtime::Images images = runtime::read_test_images(dir);
  const runtime::Evaluation e = runtime::evaluate(engine, images, o.threads);
  out << engine.model().net_class << " (" << engine.model().source << ") on " << images.count << " " << images.format
      << " test images of " << dir << ": accuracy " << fixed(e.accuracy(), 2) << "%, "
      << fixed(e.images_per_second(), 0) << " images/s on " << e.threads << " threads" << std::endl;
  if (!o.labels_out.empty()) {
    const std::string tmp = temporary_beside(o.labels_out);
    {
      std::ofstream f(tmp);
      for (int64_t l : e.labels) f << l << "\n";
      f.close();  // the last bytes reach the file here: a full disk shows now
      if (f.fail()) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw IoError(o.labels_out + ": cannot write the labels");
      }
    }
    publish_file(tmp, o.labels_out, /*replace=*/false);
  }
}

}  // namespace quantlab::export_

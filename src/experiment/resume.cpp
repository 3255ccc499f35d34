// Choosing the checkpoint a training launch resumes from.
#include "quantlab/experiment/resume.h"

#include <filesystem>

#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;

std::string describe(const CheckpointInfo& c) {
  return fs::path(c.file).filename().string() + " (after epoch " + std::to_string(c.epoch) + ")";
}

std::string flag_for(const config::CheckpointRef& r) { return "--load=" + r.text(); }

}  // namespace

ResumePoint choose_resume(const Logbook& book, const config::CheckpointRef& ref) {
  ResumePoint p;
  const std::string what = "experiment " + std::to_string(book.id());
  const Saves saves = book.saves();
  const std::string wanted = saves.path(ref);
  if (ref.kind == config::CheckpointRef::Kind::kLast && fs::exists(wanted)) {
    try {
      p.checkpoint = load_checkpoint(wanted);
      p.file = wanted;
      return p;  // `last` is the newest state by construction
    } catch (const IoError& e) {
      const auto inv = saves.inventory();
      const CheckpointInfo* best = nullptr;
      for (const auto& c : inv)
        if (c.error.empty() && (!best || c.epoch > best->epoch)) best = &c;
      throw Error(std::string(e.what()) + "\n" + what +
                  (best ? ": the newest usable checkpoint is " + describe(*best) + "; resume from it with " +
                              flag_for(best->ref)
                        : ": no other checkpoint is usable; start a new experiment"));
    }
  }
  const auto inv = saves.inventory();
  const CheckpointInfo* newest = nullptr;
  for (const auto& c : inv)
    if (c.error.empty() && (!newest || c.epoch > newest->epoch)) newest = &c;
  if (ref.kind == config::CheckpointRef::Kind::kLast) {  // last.ckpt is missing
    const int64_t recorded = saves.status().value("epochs_done", int64_t{0});
    if (newest)
      throw Error(what + ": saves/last.ckpt is missing, but the experiment has trained" +
                  (recorded > 0 ? " (status.json: " + std::to_string(recorded) + " epochs)" : std::string()) +
                  "; starting over would overwrite its checkpoints. The newest usable checkpoint is " +
                  describe(*newest) + ": resume from it with " + flag_for(newest->ref));
    if (recorded > 0 || !inv.empty())
      throw Error(what + ": no usable checkpoint is left in " + saves.dir() + " (" + saves.available() +
                  "), though it trained " + std::to_string(recorded) +
                  " epochs; start a new experiment (without --exp_id) instead of overwriting its history");
    p.fresh = true;
    return p;
  }
  p.file = saves.file(ref);
  p.checkpoint = load_checkpoint(p.file);
  if (p.checkpoint.original)
    throw Error(p.file +
                " is a checkpoint of the original QuantLab: --mode=test evaluates it, and indiv.net.pretrained "
                "({\"file\": {\"exp_id\": " +
                std::to_string(book.id()) + ", \"epoch\": \"" + ref.text() +
                "\"}}) starts a new experiment from its weights; it has no QuantLab training state to continue from");
  p.newest = newest ? newest->epoch : p.checkpoint.state.epoch;
  p.newest_file = newest ? fs::path(newest->file).filename().string() : ref.file_name();
  p.earlier = p.checkpoint.state.epoch < p.newest;
  return p;
}

std::string resume_command(const LaunchOptions& o, int64_t exp_id, const std::string& launcher) {
  std::string cmd = launcher == "torchrun" ? "torchrun <this run's torchrun options> --no-python quantlab"
                    : launcher == "SLURM"  ? "srun quantlab"
                                           : "quantlab";
  cmd += " --problem=" + shell_word(o.problem) + " --topology=" + shell_word(o.topology) +
         " --exp_id=" + std::to_string(exp_id) + " --load=last";
  if (o.home != ".") cmd += " --home=" + shell_word(o.home);
  if (!o.data.empty()) cmd += " --data=" + shell_word(o.data);
  if (o.ckpt_every != 50) cmd += " --ckpt_every=" + std::to_string(o.ckpt_every);
  if (o.log_every != 0) cmd += " --log_every=" + std::to_string(o.log_every);
  if (o.device != "auto") cmd += " --device=" + o.device;
  if (o.threads != 0) cmd += " --threads=" + std::to_string(o.threads);
  if (o.nproc > 0) cmd += " --nproc=" + std::to_string(o.nproc);
  if (o.amp) cmd += " --amp";
  if (o.deterministic) cmd += " --deterministic";
  if (o.channels_last) cmd += " --channels_last";
  return cmd;
}

}  // namespace quantlab::experiment

// launch()'s second phase (launch_steps.h): where training starts, decided by the experiment's
// owner: a new experiment, a branch of one, or the same one continued.
#include <cmath>
#include <filesystem>
#include <iostream>

#include "launch_steps.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/transfer.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment::launch_steps {
namespace {

namespace fs = std::filesystem;

void say_pretrained(int64_t copied, std::ostream& out) {
  if (copied) out << "copied " << copied << " pretrained tensors (indiv.net.pretrained)" << std::endl;
}

// A new experiment: the pretrained tensors first (a wrong indiv.net.pretrained stops the launch
// before it makes anything), then the folder.
Start create_experiment(const LaunchOptions& o, Prepared& p, std::ostream& out) {
  const int64_t copied = apply_pretrained(*p.exp, p.paths);
  prepare_storage(p.storage, p.paths);
  const auto removed = Logbook::remove_abandoned(p.paths.logs);
  if (!removed.empty())
    out << "removed " << removed.size() << " unfinished experiment folder(s) of stopped launches" << std::endl;
  p.book = Logbook::create(p.paths.logs, p.config);
  out << "experiment " << p.book->id() << ": " << p.book->dir() << std::endl;
  say_pretrained(copied, out);
  if (o.on_created) o.on_created(p.book->id());
  return {"", true};
}

// The file of `parent` holding the weights of the best epoch up to `c` (the branch's inherited
// best): `c`'s own file when that epoch is its own, else the parent's best.ckpt or epoch snapshot
// of that epoch; "" when none is kept.
std::string inherited_best(const Saves& parent, const Checkpoint& c, const std::string& c_file) {
  const int64_t epoch = c.state.best_epoch;
  if (epoch <= 0) return "";
  if (epoch == c.state.epoch) return c_file;
  for (const std::string& f : {parent.best(), parent.epoch(epoch)}) {
    if (!fs::exists(f)) continue;
    try {
      if (load_checkpoint(f).state.epoch == epoch) return f;
    } catch (const Error&) {
    }
  }
  return "";
}

// The branch's starting point `c` made to fit its config before the branch is made: another
// optimizer class (a --set; the checkpoint names its own, older ones the parent's config does)
// starts a new optimizer at the rate its schedule gives that epoch, the parent's state being of no
// use to it; a checkpoint the config cannot take otherwise (a --set of the network's size or
// class) is refused.
void fit_branch_start(const LaunchOptions& o, Prepared& p, const Logbook& parent, const std::string& file,
                      Checkpoint& c, std::ostream& out) {
  const auto optimizer_class = [](const nlohmann::json& config) {
    const nlohmann::json* o = &config;
    for (const char* key : {"treat", "optimizer", "class"}) {
      if (!o->is_object() || !o->contains(key)) return std::string();
      o = &(*o)[key];
    }
    return o->is_string() ? o->get<std::string>() : std::string();
  };
  const auto start_anew = [&](const std::string& why) {
    p.exp->optimizer->state().clear();  // nothing of a failed load
    c.optimizer = optimizer_archive(*p.exp->optimizer);
    c.optimizer_class = p.exp->optimizer_class;
    c.first_lr = p.exp->first_lr;
    c.lr = p.exp->lr_scheduler->lr_at(c.state.epoch, c.first_lr).value_or(c.first_lr);  // the schedule's
    c.lr_scheduler = p.exp->lr_scheduler->state();
    c.lr_schedule = p.exp->lr_schedule;
    out << "note: " << why << ": the branch's " << p.exp->optimizer_class << " optimizer starts anew" << std::endl;
  };
  const std::string was = c.optimizer_class.empty() ? optimizer_class(parent.config()) : c.optimizer_class;
  if (was != p.exp->optimizer_class) start_anew("experiment " + std::to_string(parent.id()) + " trained with " + was);
  try {
    try {
      (void)restore(*p.exp, c);
    } catch (const OptimizerMismatch& e) {  // a damaged archive, or one of an older checkpoint's other class
      start_anew(e.what());
      (void)restore(*p.exp, c);
    }
    if (c.optimizer_class.empty()) c.optimizer_class = p.exp->optimizer_class;  // an older checkpoint's
    if (!(c.first_lr > 0)) c.first_lr = p.exp->first_lr;
  } catch (const IoError&) {
    throw;
  } catch (const Error& e) {  // not made: nothing to undo
    throw Error(file + " cannot start a branch with this config" +
                (o.overrides.empty() ? std::string() : " (its --set changes what the checkpoint holds?)") + ": " +
                e.what());
  }
}

// --branch: a new experiment that starts from `r` and records the experiment of `p.book` as its
// parent, which is left as it is.
Start branch_from(const LaunchOptions& o, Prepared& p, const ResumePoint& r, std::ostream& out) {
  const std::string from = fs::path(r.file).filename().string();
  const nlohmann::json parent = {
      {"exp_id", p.book->id()}, {"checkpoint", from}, {"epoch", r.checkpoint.state.epoch}, {"dir", p.book->dir()}};
  const Logbook parent_book = *p.book;
  Checkpoint c = r.checkpoint;
  const std::string best = inherited_best(parent_book.saves(), c, r.file);
  if (best.empty() && c.state.best_epoch > 0) {
    out << "note: no checkpoint of experiment " << parent_book.id() << " holds the weights of its best epoch up to "
        << "here (" << c.state.best_epoch << "): the branch chooses its best epoch among its own" << std::endl;
    c.state.best_epoch = 0;
    c.state.best_value = NAN;
  }
  // Not a unit of its parent's sweep: the parent's record of it (its config's "sweep") is not copied.
  p.config.erase("sweep");
  p.exp->config.erase("sweep");
  fit_branch_start(o, p, parent_book, r.file, c, out);
  // The branch's starting point is written before the folder gets its number: a branch never exists
  // without it (a kill or a full disk during these saves leaves nothing).
  p.book = Logbook::create(p.paths.logs, p.config, parent, [&](const Logbook& hidden) {
    Session(*p.exp, hidden, o.ckpt_every, p.exp->protocol.update_metric).start_branch(parent_book.saves(), c, best);
  });
  out << "experiment " << p.book->id() << ": " << p.book->dir() << ", branched from experiment " << parent_book.id()
      << " at " << from << " (after epoch " << r.checkpoint.state.epoch << "); experiment " << parent_book.id()
      << " is left as it is" << std::endl;
  if (o.on_created) o.on_created(p.book->id());
  return {p.book->saves().last(), true};
}

// Training goes on in the experiment of `p.book` from `r`; the save of its epoch that a stop
// interrupted is completed first.
Start continue_from(const LaunchOptions& o, Prepared& p, const config::CheckpointRef& ref, const ResumePoint& r,
                    std::ostream& out) {
  out << "experiment " << p.book->id() << ": continuing from " << r.file << " (after epoch " << r.checkpoint.state.epoch
      << ")" << std::endl;
  if (ref.kind == config::CheckpointRef::Kind::kLast) {
    // last.ckpt older than the recorded history: replaced by hand (a rollback). Training from it
    // here would overwrite the later best.ckpt and history; a branch keeps them.
    const int64_t recorded = p.book->saves().status().value("epochs_done", int64_t{-1});
    if (recorded > r.checkpoint.state.epoch)
      throw Error("experiment " + std::to_string(p.book->id()) + ": saves/last.ckpt is after epoch " +
                  std::to_string(r.checkpoint.state.epoch) + ", but status.json records " + std::to_string(recorded) +
                  " epochs (was last.ckpt replaced by an earlier checkpoint?); training from it here would "
                  "overwrite the later history. Train from it in a new experiment with --load=last --branch, or "
                  "put the newer last.ckpt back");
    if (p.book->saves().status_damaged())
      out << "note: " << p.book->saves().status_file()
          << " is damaged: it is written again from the checkpoints (the training time before this run is not "
             "known)"
          << std::endl;
    const auto repaired = Session(*p.exp, *p.book, o.ckpt_every, p.exp->protocol.update_metric).repair(r.checkpoint);
    if (!repaired.empty())
      out << "completed the save of epoch " << r.checkpoint.state.epoch
          << " that a stop interrupted: " << join(repaired) << std::endl;
  }
  return {r.file, false};
}

}  // namespace

Start start_as_owner(const LaunchOptions& o, Prepared& p, const config::CheckpointRef& ref, std::ostream& out) {
  if (!p.book) return create_experiment(o, p, out);
  try {
    p.book->lock();
    const auto removed = p.book->remove_partial_files();
    if (!removed.empty())
      out << "removed " << removed.size() << " partial file(s) a stopped run left: " << join(removed) << std::endl;
  } catch (const IoError&) {
    throw;
  } catch (const Error&) {  // another process holds it: a branch only reads its saved checkpoints
    if (!o.branch) throw;
    const long pid = ExperimentLock::holder(p.book->dir());
    out << "note: experiment " << p.book->id() << " is in use by another process"
        << (pid > 0 ? " (PID " + std::to_string(pid) + ")" : std::string())
        << "; the branch starts from its saved checkpoint and leaves it alone" << std::endl;
  }
  const ResumePoint r = choose_resume(*p.book, ref);
  if (r.fresh && o.branch) throw nothing_to_branch(p.book->id());
  if (r.fresh) {
    const nlohmann::json parent = p.book->parent();
    if (!parent.is_null())  // a branch made before its start was written with it (an older QuantLab)
      throw Error("experiment " + std::to_string(p.book->id()) + " is a branch of experiment " +
                  parent.value("exp_id", nlohmann::json()).dump() +
                  " (parent.json) but holds no checkpoint: the launch "
                  "that made it stopped before it saved its starting point, and training it from epoch 1 would not "
                  "be that branch. Remove " +
                  p.book->dir() + " and branch again with --branch");
    out << "experiment " << p.book->id() << " has no checkpoint yet: training it from epoch 1" << std::endl;
    // As when it was made: indiv.net.pretrained's tensors before the first epoch.
    say_pretrained(apply_pretrained(*p.exp, p.paths), out);
    return {};
  }
  print_notes(r.checkpoint.notes, out);
  if (r.earlier && !o.branch) {
    const std::string from = fs::path(r.file).filename().string();
    throw Error("experiment " + std::to_string(p.book->id()) + " has trained " + std::to_string(r.newest) +
                " epochs (" + r.newest_file + "); " + from + " is after epoch " +
                std::to_string(r.checkpoint.state.epoch) +
                ", and training from it here would overwrite the later checkpoints and history. Continue with "
                "--load=last, or add --branch to train from " +
                from + " in a new experiment that records this one as its parent");
  }
  return o.branch ? branch_from(o, p, r, out) : continue_from(o, p, ref, r, out);
}

}  // namespace quantlab::experiment::launch_steps

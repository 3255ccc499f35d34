// Between an experiment and its checkpoint: capture (the network, optimizer, schedule, thermostat
// and generators) and restore (the weights alone, or all of it to train on), of QuantLab's
// checkpoints and of the original's. The file format: checkpoint.cpp.
#include <cstdio>
#include <cstring>
#include <sstream>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/optimizer_state.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

// The original's ANA modules also save their stair and spreads (thresholds, quant_levels, stddev):
// QuantLab takes those from the config.
bool original_only(const std::string& name) {
  for (const char* s : {".thresholds", ".quant_levels", ".stddev"}) {
    const size_t n = std::strlen(s);
    if (name.size() > n && name.compare(name.size() - n, n, s) == 0) return true;
  }
  return false;
}

// Copies every tensor of the network from `saved`, by name; `whose` names the file in errors.
void copy_named(std::map<std::string, torch::Tensor>& live, const std::map<std::string, torch::Tensor>& saved,
                const std::string& whose) {
  for (auto& kv : live) {
    auto it = saved.find(kv.first);
    if (it == saved.end()) throw Error(whose + " has no tensor '" + kv.first + "' (another topology?)");
    if (it->second.sizes() != kv.second.sizes())
      throw Error(whose + " tensor '" + kv.first + "' has shape " + c10::str(it->second.sizes()) +
                  ", the network's has " + c10::str(kv.second.sizes()) + " (another capacity?)");
    kv.second.copy_(it->second);  // to the network's dtype and device
  }
}

void restore_original(train::Experiment& exp, const Checkpoint& c) {
  torch::NoGradGuard no_grad;
  auto live = named_state(*exp.net);
  copy_named(live, c.net, "the original's checkpoint");
  for (const auto& kv : c.net)
    if (!live.count(kv.first) && !original_only(kv.first))
      throw Error("the original's checkpoint has a tensor '" + kv.first +
                  "' this network does not (another topology?)");
  if (exp.thermostat) exp.thermostat->set_clock(c.thermostat_clock);
}

}  // namespace

std::map<std::string, torch::Tensor> named_state(torch::nn::Module& net) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : net.named_buffers()) out[b.key()] = b.value();
  return out;
}

torch::Tensor optimizer_archive(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream os;
  archive.save_to(os);
  const std::string bytes = os.str();
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

Checkpoint capture(train::Experiment& exp, const train::TrainingState& state) {
  Checkpoint c;
  c.net_class = exp.net_spec.cls;
  c.net = named_state(*exp.net);
  c.optimizer = optimizer_archive(*exp.optimizer);
  c.optimizer_class = exp.optimizer_class;
  c.first_lr = exp.first_lr;
  c.lr = train::get_lr(*exp.optimizer);
  c.lr_scheduler = exp.lr_scheduler->state();
  c.lr_schedule = exp.lr_schedule;
  c.thermostat_clock = exp.thermostat ? exp.thermostat->clock() : 0;
  c.state = state;
  c.rng_cpu = at::detail::getDefaultCPUGenerator().get_state();
  if (torch::cuda::is_available())
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      c.rng_cuda.push_back(at::globalContext().defaultGenerator(at::Device(at::kCUDA, i)).get_state());
  return c;
}

namespace {

// The optimizer's state from the checkpoint, its settings from the config: libtorch's archive also
// brings back the settings it was saved with, and a config edited before a resume (or a branch's
// --set) changes them. Then the next epoch's rate.
void restore_optimizer(train::Experiment& exp, const Checkpoint& c, std::vector<std::string>& notes) {
  if (!c.optimizer_class.empty() && c.optimizer_class != exp.optimizer_class)
    throw OptimizerMismatch("the checkpoint's optimizer is " + c.optimizer_class + ", the config's " +
                            exp.optimizer_class +
                            ": a resume goes on with the checkpoint's (put its class back in "
                            "treat.optimizer.class), a --branch starts a new one");
  auto& groups = exp.optimizer->param_groups();
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> configured;
  configured.reserve(groups.size());
  for (auto& g : groups) configured.push_back(g.options().clone());
  try {  // libtorch's own checks of a state it cannot take
    torch::serialize::InputArchive archive;
    const auto bytes = c.optimizer.contiguous();
    std::istringstream is(std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())));
    archive.load_from(is, exp.device);
    train::load_optimizer_state(*exp.optimizer, archive);  // whichever libtorch wrote it
  } catch (const std::exception& e) {                      // c10::Error, or a key that is no address (std::stoull)
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    std::string why = first_line(c10 ? c10->what_without_backtrace() : e.what());
    if (why.find("INTERNAL ASSERT") != std::string::npos) why = "the archive holds another optimizer's state";
    throw OptimizerMismatch("the checkpoint's optimizer state cannot be restored into this experiment's " +
                            exp.optimizer_class + " optimizer (" + why +
                            "; a damaged file, or one written by another optimizer class)");
  }
  for (size_t i = 0; i < groups.size(); ++i) groups[i].set_options(std::move(configured[i]));
  // The next epoch's rate: the config's schedule at this epoch where it is a function of the epoch;
  // for a schedule that follows a statistic, the rate the run reached, scaled by how the config's
  // starting rate changed. With the config unchanged, the checkpoint's rate either way.
  const double first = exp.first_lr;  // the config's, whatever the optimizer holds (a second restore)
  const double reached = c.first_lr > 0 ? c.lr * (first / c.first_lr) : c.lr;
  const double lr = exp.lr_scheduler->lr_at(c.state.epoch, first).value_or(reached);
  if (lr != c.lr) {
    char text[240];
    std::snprintf(text, sizeof text,
                  "the config gives epoch %lld the learning rate %.6g, the checkpoint's run %.6g: training goes on "
                  "with the config's",
                  static_cast<long long>(c.state.epoch + 1), lr, c.lr);
    notes.emplace_back(text);
  }
  train::set_lr(*exp.optimizer, lr);
  if (const auto m = exp.lr_scheduler->momentum_at(c.state.epoch)) train::set_momentum(*exp.optimizer, *m);
  train::fill_missing_state(*exp.optimizer);  // after the momentum, which a cycling schedule may switch on
}

}  // namespace

std::vector<std::string> restore(train::Experiment& exp, const Checkpoint& c, bool optimizer) {
  const std::string& cls = exp.net_spec.cls;
  std::vector<std::string> notes;
  if (c.original) {
    restore_original(exp, c);
    return notes;
  }
  if (c.net_class != cls)
    throw Error("the checkpoint holds a " + c.net_class + " network, the experiment builds a " + cls);
  {
    torch::NoGradGuard no_grad;
    auto live = named_state(*exp.net);
    copy_named(live, c.net, "the checkpoint");
    if (live.size() != c.net.size())
      throw Error("the checkpoint has tensors this network does not (another topology?)");
  }
  if (optimizer) {
    restore_optimizer(exp, c, notes);
    // Another schedule since the checkpoint (config.json edited, a branch's --set): the config's
    // takes over with its own state (an older checkpoint names none: its state's size tells).
    const auto loaded = [&] {
      try {
        exp.lr_scheduler->load_state(c.lr_scheduler);
        return true;
      } catch (const Error&) {
        return false;
      }
    };
    if ((!c.lr_schedule.empty() && c.lr_schedule != exp.lr_schedule) || !loaded())
      notes.push_back("the checkpoint's run had another learning-rate schedule (" +
                      (c.lr_schedule.empty() ? std::string() : c.lr_schedule + ", now ") + exp.lr_schedule +
                      "; treat.lr_scheduler changed): the config's takes over from epoch " +
                      std::to_string(c.state.epoch + 1) + " with its own state");
  }
  try {  // libtorch's own checks of a state it cannot take (an archive or generator edited by hand)
    if (exp.thermostat) exp.thermostat->set_clock(c.thermostat_clock);
    at::Generator cpu = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
    cpu.set_state(c.rng_cpu);
    for (size_t i = 0;
         i < c.rng_cuda.size() && torch::cuda::is_available() && i < static_cast<size_t>(torch::cuda::device_count());
         ++i) {
      at::Generator cuda = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<int16_t>(i)));
      cuda.set_state(c.rng_cuda[i]);
    }
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();
    throw Error("the checkpoint's optimizer or generator state cannot be restored (" + first_line(why) + ")");
  }
  return notes;
}

}  // namespace quantlab::experiment

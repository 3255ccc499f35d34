// Session: checkpoints of a run and their lookup.
#include "quantlab/experiment/session.h"

#include <filesystem>
#include <fstream>

#include "quantlab/config/json_node.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;

std::string epoch_file(int64_t epochs_done) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "epoch%04lld.ckpt", static_cast<long long>(epochs_done));
  return buf;
}

// Epoch numbers of the saves/epochNNNN.ckpt files, ascending.
std::vector<int64_t> epoch_files(const std::string& saves) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(saves, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 10 && n.compare(0, 5, "epoch") == 0 && n.compare(n.size() - 5, 5, ".ckpt") == 0) {
      const std::string digits = n.substr(5, n.size() - 10);
      if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos)
        out.push_back(std::stoll(digits));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string available(const std::string& saves) {
  std::string out;
  for (const char* n : {"best.ckpt", "last.ckpt"})
    if (fs::exists(saves + "/" + n)) out += (out.empty() ? "" : ", ") + std::string(n);
  for (int64_t e : epoch_files(saves)) out += (out.empty() ? "" : ", ") + epoch_file(e);
  return out.empty() ? "none" : out;
}

}  // namespace

Session::Session(Experiment& exp, const Logbook& book, int64_t ckpt_every)
    : exp_(exp), book_(book), ckpt_every_(ckpt_every) {}

void Session::on_epoch(const EpochRecord& r, const TrainingState& state) {
  const Checkpoint c = capture(exp_, state);
  const std::string saves = book_.saves();
  save_checkpoint(saves + "/last.ckpt", c);
  if (r.best) save_checkpoint(saves + "/best.ckpt", c);
  if (ckpt_every_ > 0 && state.epoch % ckpt_every_ == 0) save_checkpoint(saves + "/" + epoch_file(state.epoch), c);
  const nlohmann::json status = {{"epochs_done", state.epoch},
                                 {"max_epoch", exp_.max_epoch},
                                 {"net_class", c.net_class},
                                 {"update_metric", exp_.protocol.update_metric},
                                 {"best_epoch", state.best_epoch + 1},
                                 {"best_value", state.best_value},
                                 {"finished", state.epoch >= exp_.max_epoch}};
  write_file_atomically(saves + "/status.json", status.dump(2) + "\n");
}

std::string Session::checkpoint_file(const Logbook& book, const std::string& load) {
  const std::string saves = book.saves();
  std::string file;
  if (load == "best" || load == "last") {
    file = saves + "/" + load + ".ckpt";
  } else {
    if (load.empty() || load.find_first_not_of("0123456789") != std::string::npos)
      throw Error("--load='" + load + "': expected best, last or an epoch number");
    file = saves + "/" + epoch_file(std::stoll(load));
  }
  if (!fs::exists(file))
    throw Error(file + ": no such checkpoint; available in " + saves + ": " + available(saves));
  return file;
}

nlohmann::json Session::status(const Logbook& book) {
  std::ifstream in(book.saves() + "/status.json");
  if (!in) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error&) {
    return nlohmann::json::object();
  }
}

int64_t apply_pretrained(Experiment& exp, const std::string& logs_dir) {
  const nlohmann::json& spec = exp.config["indiv"]["net"]["pretrained"];
  if (spec.is_null()) return 0;
  const JsonNode node(spec, "indiv.net.pretrained");
  node.allow_keys({"exp_id", "epoch", "file", "prefixes"});
  std::string file;
  if (node.has("file")) {
    file = node.at("file").string();
  } else {
    const Logbook book = Logbook::open(logs_dir, node.at("exp_id").integer());
    std::string load = "best";
    if (node.has("epoch")) load = node.at("epoch").is_number() ? std::to_string(node.at("epoch").integer()) : node.at("epoch").string();
    file = Session::checkpoint_file(book, load);
  }
  const std::vector<std::string> prefixes = node.has("prefixes") ? node.at("prefixes").strings() : std::vector<std::string>{};
  const Checkpoint c = load_checkpoint(file);
  auto live = named_state(*exp.net);
  int64_t copied = 0;
  torch::NoGradGuard no_grad;
  for (auto& kv : live) {
    bool wanted = prefixes.empty();
    for (const auto& p : prefixes) wanted = wanted || kv.first.rfind(p, 0) == 0;
    if (!wanted) continue;
    auto it = c.net.find(kv.first);
    if (it == c.net.end()) continue;
    if (it->second.sizes() != kv.second.sizes())
      node.fail("'" + kv.first + "' has shape " + c10::str(it->second.sizes()) + " in " + file + " but " +
                c10::str(kv.second.sizes()) + " here");
    kv.second.copy_(it->second);
    ++copied;
  }
  if (copied == 0) node.fail("no tensor of " + file + " matches the prefixes");
  return copied;
}

}  // namespace quantlab

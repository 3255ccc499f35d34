// load_optimizer_state: libtorch's serialize(InputArchive&, Optimizer&) with keys parsed in either
// base (std::stoull's base 0 reads "0x..." and decimal alike).
#include "quantlab/train/optimizer_state.h"

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace quantlab::train {
namespace {

using torch::optim::OptimizerOptions;
using torch::optim::OptimizerParamState;

uint64_t parse_key(const std::string& key) { return std::stoull(key, nullptr, 0); }

template <typename State, typename Options>
void load_as(torch::optim::Optimizer& opt, torch::serialize::InputArchive& archive) {
  c10::IValue version;
  archive.read("pytorch_version", version);
  TORCH_CHECK(version.isString() && version.toStringRef() == "1.5.0", "optimizer archive of an unknown version");
  torch::serialize::InputArchive state_archive;
  archive.read("state", state_archive);
  std::map<uint64_t, std::unique_ptr<State>> saved;
  for (const std::string& key : state_archive.keys()) {
    torch::serialize::InputArchive one;
    state_archive.read(key, one);
    auto s = std::make_unique<State>();
    s->serialize(one);
    saved[parse_key(key)] = std::move(s);
  }
  torch::serialize::InputArchive groups_archive;
  archive.read("param_groups", groups_archive);
  std::vector<std::pair<std::vector<std::string>, std::unique_ptr<OptimizerOptions>>> groups;
  torch::optim::detail::serialize<Options>(groups_archive, groups);
  TORCH_CHECK(groups.size() == opt.param_groups().size(), "the saved optimizer has ", groups.size(),
              " parameter groups, this one ", opt.param_groups().size());
  auto& state = opt.state();
  state.clear();  // the archive's states only: none left of an earlier load or step
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::vector<std::string>& keys = groups[g].first;
    const std::vector<torch::Tensor>& params = opt.param_groups()[g].params();
    TORCH_CHECK(keys.size() == params.size(), "the saved optimizer's parameter group ", g, " has ", keys.size(),
                " parameters, this one ", params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = saved.find(parse_key(keys[i]));
      if (it != saved.end()) state[optimizer_state_key(opt, params[i])] = std::move(it->second);
    }
    static_cast<Options&>(opt.param_groups()[g].options()) = static_cast<const Options&>(*groups[g].second);
  }
}

}  // namespace

void load_optimizer_state(torch::optim::Optimizer& opt, torch::serialize::InputArchive& archive) {
  using namespace torch::optim;
  if (dynamic_cast<AdamW*>(&opt)) return load_as<AdamWParamState, AdamWOptions>(opt, archive);
  if (dynamic_cast<Adam*>(&opt)) return load_as<AdamParamState, AdamOptions>(opt, archive);
  if (dynamic_cast<SGD*>(&opt)) return load_as<SGDParamState, SGDOptions>(opt, archive);
  if (dynamic_cast<Adagrad*>(&opt)) return load_as<AdagradParamState, AdagradOptions>(opt, archive);
  if (dynamic_cast<RMSprop*>(&opt)) return load_as<RMSpropParamState, RMSpropOptions>(opt, archive);
  opt.load(archive);
}

void fill_missing_state(torch::optim::Optimizer& opt) {
  using namespace torch::optim;
  for (auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      auto it = opt.state().find(optimizer_state_key(opt, p));
      if (it == opt.state().end()) continue;  // created by the first step
      OptimizerParamState& state = *it->second;
      if (auto* o = dynamic_cast<AdamWOptions*>(&group.options())) {
        auto& s = static_cast<AdamWParamState&>(state);
        if (o->amsgrad() && !s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(torch::zeros_like(p));
      } else if (auto* a = dynamic_cast<AdamOptions*>(&group.options())) {
        auto& s = static_cast<AdamParamState&>(state);
        if (a->amsgrad() && !s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(torch::zeros_like(p));
      } else if (auto* r = dynamic_cast<RMSpropOptions*>(&group.options())) {
        auto& s = static_cast<RMSpropParamState&>(state);
        if (r->momentum() > 0 && !s.momentum_buffer().defined()) s.momentum_buffer(torch::zeros_like(p));
        if (r->centered() && !s.grad_avg().defined()) s.grad_avg(torch::zeros_like(p));
      }
    }
}

}  // namespace quantlab::train

// The processes of one run, as launch() (experiment/launch.h) sees them: the only process, or the
// ranks of a data-parallel run, of which rank 0 (the owner) writes the experiment folder and
// decides for the others. launch() asks the group; a single process is the trivial case (it
// decides alone and shares nothing).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "quantlab/dist/communicator.h"
#include "quantlab/dist/environment.h"

namespace quantlab::dist {

class Group {
 public:
  // One process (no environment), or this process's rank connected to the others (it says so on
  // `out`).
  // `timeout`: each collective's; `start_timeout`: the start-up's and rank 0's work that the others
  // wait for (communicator.h).
  Group(const std::optional<Environment>& env, torch::Device device, std::chrono::seconds timeout,
        std::chrono::seconds start_timeout, std::ostream& out);

  bool owner() const { return !comm_ || comm_->rank() == 0; }
  Communicator* communicator() const { return comm_.get(); }

  // The owner runs `decide` and gives its text to the other ranks, which wait for it and get it;
  // an error of the owner's reaches them too (thrown there as "rank 0 did not start: ..."), so none
  // waits for nothing.
  std::string decided_by_owner(const std::string& key, const std::function<std::string()>& decide);
  // The owner runs `work` (its checkpoints of an epoch) and says so; the others wait for it up to
  // the start-up timeout, not in the next collective, which waits only the collective timeout. An
  // error of the owner's reaches them too ("rank 0 could not finish <what>: ...").
  void done_by_owner(const std::string& what, const std::function<void()>& work);
  // Every rank runs `work` (reading the checkpoint it resumes from) and none goes on before all
  // are done, waiting up to the start-up timeout; an error of any rank's reaches the others.
  void done_by_every_rank(const std::string& what, const std::function<void()>& work);
  // The owner's parameters and buffers on every rank (nothing for one process).
  void share_state(torch::nn::Module& net);
  // The owner's flag on every rank.
  bool owners_flag(bool flag);
  // `t` of every rank, in rank order (empty for one process: nothing to gather).
  std::vector<torch::Tensor> gather(const torch::Tensor& t);

 private:
  std::unique_ptr<Communicator> comm_;
};

}  // namespace quantlab::dist

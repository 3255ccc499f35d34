// The processes of one run.
#include "quantlab/dist/group.h"

#include <nlohmann/json.hpp>

#include "quantlab/dist/gradient_sync.h"
#include "quantlab/util/error.h"

namespace quantlab::dist {

Group::Group(const std::optional<Environment>& env, torch::Device device, std::chrono::seconds timeout,
             std::chrono::seconds start_timeout, std::ostream& out) {
  if (!env) return;
  comm_ = Communicator::connect(*env, device, timeout, start_timeout);
  out << "rank 0 of " << env->world_size << " (" << comm_->backend() << ", master " << env->master_addr << ":"
      << env->master_port << ")" << std::endl;
}

std::string Group::decided_by_owner(const std::string& key, const std::function<std::string()>& decide) {
  if (!comm_) return decide();
  if (owner()) {
    std::string value;
    try {
      value = decide();
    } catch (const std::exception& e) {
      comm_->publish(key, nlohmann::json{{"error", e.what()}}.dump());
      comm_->failure_known(key);
      throw;
    }
    comm_->publish(key, nlohmann::json{{"value", value}}.dump());
    return value;
  }
  const auto msg = nlohmann::json::parse(comm_->read(key));
  if (msg.contains("error")) {
    comm_->failure_known(key);
    throw Error("rank 0 did not start: " + msg["error"].get<std::string>());
  }
  return msg["value"].get<std::string>();
}

void Group::done_by_owner(const std::string& what, const std::function<void()>& work) {
  if (!comm_ || owner()) {
    try {
      work();
    } catch (const std::exception& e) {
      if (comm_) {
        comm_->publish("done/" + what, nlohmann::json{{"error", e.what()}}.dump());
        comm_->failure_known("done/" + what);
      }
      throw;
    }
    if (comm_) comm_->publish("done/" + what, nlohmann::json::object().dump());
    return;
  }
  const auto msg = nlohmann::json::parse(comm_->read("done/" + what));
  if (msg.contains("error")) {
    comm_->failure_known("done/" + what);
    throw Error("rank 0 could not finish " + what + ": " + msg["error"].get<std::string>());
  }
}

void Group::done_by_every_rank(const std::string& what, const std::function<void()>& work) {
  if (!comm_) return work();
  try {
    work();
  } catch (const std::exception& e) {
    comm_->arrive(what, e.what());
    throw;
  }
  comm_->arrive(what);
}

void Group::share_state(torch::nn::Module& net) {
  if (comm_) broadcast_state(net, *comm_);
}

bool Group::owners_flag(bool flag) {
  if (!comm_) return flag;
  torch::Tensor t = torch::tensor({flag ? 1.0f : 0.0f});
  comm_->broadcast(t, 0);
  return t.item<float>() > 0;
}

std::vector<torch::Tensor> Group::gather(const torch::Tensor& t) {
  if (!comm_) return {};
  return comm_->all_gather(t);
}

}  // namespace quantlab::dist

// CheckpointRef: parsing and file names.
#include "quantlab/config/checkpoint_ref.h"

#include <cstdio>

#include "quantlab/util/error.h"

namespace quantlab::config {

CheckpointRef CheckpointRef::parse(const std::string& text, const std::string& what) {
  if (text == "best") return best();
  if (text == "last") return last();
  const bool digits = !text.empty() && text.size() <= 9 && text.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoll(text) < 1)
    throw Error(what + "='" + text + "': expected best, last or an epoch number (1, 2, ...)");
  return at_epoch(std::stoll(text));
}

std::string CheckpointRef::text() const {
  switch (kind) {
    case Kind::kBest:
      return "best";
    case Kind::kLast:
      return "last";
    case Kind::kEpoch:
      break;
  }
  return std::to_string(epoch);
}

std::string CheckpointRef::file_name() const {
  return kind == Kind::kEpoch ? epoch_file_name(epoch) : text() + ".ckpt";
}

std::string epoch_file_name(int64_t epochs_done) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "epoch%04lld.ckpt", static_cast<long long>(epochs_done));
  return buf;
}

int64_t epoch_of_file_name(const std::string& n) {
  if (n.size() <= 10 || n.compare(0, 5, "epoch") != 0 || n.compare(n.size() - 5, 5, ".ckpt") != 0) return -1;
  const std::string digits = n.substr(5, n.size() - 10);
  if (digits.size() > 15 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace quantlab::config

// Statistic names.
#include "quantlab/train/statistic.h"

#include "quantlab/util/strings.h"

namespace quantlab::train {

const char* statistic_name(Statistic s) {
  static const char* const kNames[] = {"train_loss", "train_metric", "valid_loss", "valid_metric"};
  return kNames[static_cast<size_t>(s)];
}

Statistic parse_statistic(const config::JsonNode& node) {
  const std::string name = node.string();
  for (Statistic s : kStatistics)
    if (name == statistic_name(s)) return s;
  node.fail("expected one of " + join(kStatistics, [](Statistic s) { return std::string(statistic_name(s)); }) +
            "; got \"" + name + "\"");
}

Statistic training_counterpart(Statistic s) {
  if (s == Statistic::kValidLoss) return Statistic::kTrainLoss;
  if (s == Statistic::kValidMetric) return Statistic::kTrainMetric;
  return s;
}

bool EpochStatistics::operator==(const EpochStatistics& o) const {
  for (size_t i = 0; i < values.size(); ++i) {
    const bool both_nan = std::isnan(values[i]) && std::isnan(o.values[i]);
    if (!both_nan && values[i] != o.values[i]) return false;
  }
  return true;
}

}  // namespace quantlab::train

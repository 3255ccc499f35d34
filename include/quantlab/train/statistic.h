// The statistics of an epoch that the original tracks, by its names: train_loss, train_metric,
// valid_loss, valid_metric. Metrics are classification errors in percent (lower is better, as
// losses). protocol.update_metric and ReduceLROnPlateau's step_metric name one of them.
#pragma once

#include <array>
#include <cmath>
#include <string>

#include "quantlab/config/json_node.h"

namespace quantlab::train {

enum class Statistic { kTrainLoss = 0, kTrainMetric = 1, kValidLoss = 2, kValidMetric = 3 };
constexpr std::array<Statistic, 4> kStatistics = {Statistic::kTrainLoss, Statistic::kTrainMetric, Statistic::kValidLoss,
                                                  Statistic::kValidMetric};

const char* statistic_name(Statistic s);
// The statistic `node` names (a string); anything else fails naming the JSON path and the four names.
Statistic parse_statistic(const config::JsonNode& node);
// Whether the statistic is measured on the validation set.
inline bool is_validation(Statistic s) { return s == Statistic::kValidLoss || s == Statistic::kValidMetric; }
// The training-set statistic of the same kind (valid_metric -> train_metric).
Statistic training_counterpart(Statistic s);

// One epoch's four values; NaN where not measured (no validation set, or a training metric the
// protocol's metric_period skipped).
struct EpochStatistics {
  std::array<double, 4> values = {NAN, NAN, NAN, NAN};
  double operator[](Statistic s) const { return values[static_cast<size_t>(s)]; }
  double& operator[](Statistic s) { return values[static_cast<size_t>(s)]; }
  bool operator==(const EpochStatistics& o) const;  // NaN equals NaN here
};

}  // namespace quantlab::train

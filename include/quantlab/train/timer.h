// Timers of the thermostat: pure functions from the clock t (an epoch count) to a decay factor
// that multiplies a module's starting noise (docs/ANA.md §4).
//   Constant                          1
//   Linear(t_start, t_decay)          1 - clip((t - t_start) / t_decay, 0, 1)
//   Quadratic(t_start, t_decay)       Linear squared
//   BoundedWindow(t_start, t_end, alpha)   ((t_end - clip(t, t_start, t_end)) / (t_end - t_start))^alpha
//   UnboundedWindow(t_start, eps, alpha)   (1 / (max(t - t_start, 0) + 1))^alpha, 0 once below eps
// ("bws" and "uws" are accepted as the successor's names of the two windows.)
// To add a timer: a function here and one `add()` line in timer.cpp.
#pragma once

#include <functional>

#include "quantlab/config/json_node.h"
#include "quantlab/util/registry.h"

namespace quantlab::train {

using Timer = std::function<double(double t)>;

// Builds a timer from {class, params}; errors name the JSON path.
Timer make_timer(const config::JsonNode& spec);

}  // namespace quantlab::train

// Parity of the integer runtime with the float network.
#include "quantlab/export/parity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include "quantlab/data/tensor_dataset.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/topology/step_network.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::export_ {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The network's forward pass (the same one, through StepNetwork's visitor), with every ANA
// activation's input (the batch-norm output, or the real value it quantizes) and output kept: one
// per threshold layer of the model, in order.
struct Replay {
  std::vector<torch::Tensor> act_inputs, levels;  // per threshold layer, [N, ...]
  torch::Tensor scores;
};

// Of the batch `input`, only the rows `keep` are kept (a whole batch's activations of a VGG would
// take gigabytes).
Replay replay(train::Experiment& exp, const torch::Tensor& input, const std::vector<int64_t>& keep) {
  auto* net = dynamic_cast<topology::StepNetwork*>(exp.net.get());
  if (!net) throw Error(exp.net_spec.cls + ": the parity check replays networks built from steps");
  auto modules = exp.net->named_modules("", false);
  const torch::Tensor rows = torch::tensor(keep, torch::kLong).to(input.device());
  Replay r;
  r.scores = net->forward(input, [&](const topology::Step& st, const torch::Tensor& in, const torch::Tensor& out) {
    if (st.kind != topology::Step::Kind::kActivation || !modules.contains(st.name)) return;
    if (!dynamic_cast<nn::AnaActivationImpl*>(modules[st.name].get())) return;
    r.act_inputs.push_back(in.index_select(0, rows));
    r.levels.push_back(out.index_select(0, rows));
  });
  r.scores = r.scores.index_select(0, rows);
  return r;
}

// Flat index of element `i` of a [C, H, W] (or [C]) sample in CHW order, as the runtime stores it.
torch::Tensor chw(const torch::Tensor& sample) { return sample.contiguous().reshape({-1}); }

// Labels of the whole test set, timed on 1 thread and on `threads`.
struct TimedLabels {
  std::vector<int64_t> labels;
  double seconds_1 = 0, seconds_all = 0;
};

// The float network, as --mode=test evaluates it: batches of bs_valid.
TimedLabels float_labels(train::Experiment& exp, const data::TensorDataset& set, int threads) {
  const int64_t n = set.size(), bs = exp.data.bs_valid;
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  auto labels = [&]() {
    std::vector<int64_t> out;
    for (int64_t b = 0; b < n; b += bs) {
      const auto batch = set.make_batch(all.data() + b, std::min(bs, n - b), b, data::SampleContext{});
      const auto pred = exp.net->forward(batch.inputs.to(exp.device)).argmax(1).cpu();
      for (int64_t i = 0; i < pred.size(0); ++i) out.push_back(pred[i].item<int64_t>());
    }
    return out;
  };
  TimedLabels t;
  const int saved_threads = at::get_num_threads();
  at::set_num_threads(1);
  auto t0 = Clock::now();
  labels();
  t.seconds_1 = since(t0);
  at::set_num_threads(threads);
  t0 = Clock::now();
  t.labels = labels();
  t.seconds_all = since(t0);
  at::set_num_threads(saved_threads);
  return t;
}

// The integer runtime on the stored pixels.
TimedLabels integer_labels(const runtime::Engine& engine, const uint8_t* px, int64_t n, int threads) {
  TimedLabels t;
  auto t0 = Clock::now();
  engine.predict_all(px, n, 1);
  t.seconds_1 = since(t0);
  t0 = Clock::now();
  t.labels = engine.predict_all(px, n, threads);
  t.seconds_all = since(t0);
  return t;
}

// The replay of the batch of bs_valid images that held image `i` when float_labels labelled it,
// keeping the rows of the batch's disagreements (`differ`, in image order; the last batch kept).
// The same batch rounds the same way: image `i` replayed alone may land on the other side of a
// threshold it is within rounding of, and the tie would be missed (the export refused as a
// defect; a batch size of 1 made it agree).
struct BatchReplay {
  int64_t start = -1;
  std::vector<int64_t> images;  // the disagreeing images kept, in the order of the replay's rows
  Replay r;
};
int64_t replay_batch_of(train::Experiment& exp, const data::TensorDataset& set, int64_t i,
                        const std::vector<int64_t>& differ, BatchReplay& cache) {
  const int64_t bs = exp.data.bs_valid, start = i / bs * bs, size = std::min(bs, set.size() - start);
  if (cache.start != start) {
    std::vector<int64_t> indices(static_cast<size_t>(size)), rows;
    std::iota(indices.begin(), indices.end(), start);
    cache.images.clear();
    for (int64_t j : differ)
      if (j >= start && j < start + size) cache.images.push_back(j), rows.push_back(j - start);
    const auto batch = set.make_batch(indices.data(), size, start, data::SampleContext{});
    cache.r = replay(exp, batch.inputs.to(exp.device), rows);
    cache.start = start;
  }
  return std::find(cache.images.begin(), cache.images.end(), i) - cache.images.begin();
}

// Where the float network and the runtime part on image `i`: the first threshold layer whose
// output differs (or the scores, when every activation agrees).
Disagreement explain(train::Experiment& exp, const data::TensorDataset& set, const runtime::Engine& engine,
                     const uint8_t* px, int64_t i, int64_t float_label, int64_t integer_label,
                     const std::vector<int64_t>& differ, BatchReplay& cache) {
  Disagreement d;
  d.image = i, d.float_label = float_label, d.integer_label = integer_label;
  const int64_t row = replay_batch_of(exp, set, i, differ, cache);
  const Replay& r = cache.r;
  runtime::Engine::Trace trace;
  engine.scores(px + i * engine.image_size(), &trace);
  size_t int_layer = 0, float_layer = 0, k = 0;
  for (const runtime::Layer& l : engine.model().layers) {
    if (l.kind != runtime::LayerKind::kThreshold) continue;
    const auto fl_levels = chw(r.levels[k][row]).to(torch::kFloat64).div(l.level_step).round().to(torch::kLong);
    const auto& il_levels = trace.levels[k];
    for (int64_t e = 0; e < fl_levels.numel(); ++e) {
      if (fl_levels[e].item<int64_t>() == il_levels[static_cast<size_t>(e)]) continue;
      const int64_t per = fl_levels.numel() / l.channels;
      d.layer = l.name, d.channel = e / per, d.position = e % per;
      const auto bn = chw(r.act_inputs[k][row]).to(torch::kFloat64);
      d.float_value = bn[e].item<double>();
      std::vector<std::string> ts;
      if (l.float_input) {
        d.accumulator = trace.float_inputs[float_layer][static_cast<size_t>(e)];
        for (int64_t j = 0; j < l.num_thresholds; ++j)
          ts.push_back(std::to_string(l.float_thresholds[static_cast<size_t>(d.channel * l.num_thresholds + j)]));
      } else {
        d.accumulator = trace.accumulators[int_layer][static_cast<size_t>(e)];
        for (int64_t j = 0; j < l.num_thresholds; ++j)
          ts.push_back(std::to_string(l.int_thresholds[static_cast<size_t>(d.channel * l.num_thresholds + j)]));
      }
      d.thresholds = join(ts);
      // The stair threshold nearest the float value: a tie when the float value is within
      // float32 rounding of it.
      const size_t plus = l.name.find(" + ");  // "phi1_bn + phi1_act", or "phi06_act"
      const auto* act = dynamic_cast<nn::AnaActivationImpl*>(
          exp.net->named_modules("", false)[plus == std::string::npos ? l.name : l.name.substr(plus + 3)].get());
      double nearest = 0, gap = INFINITY;
      if (act)
        for (float t : act->scheme().quantizer.thresholds) {
          const double th = t + act->noise().mu;
          if (std::abs(d.float_value - th) < gap) gap = std::abs(d.float_value - th), nearest = th;
        }
      d.float_threshold = nearest;
      d.tie = gap <= 1e-5 * std::max(1.0, std::abs(nearest));
      break;
    }
    if (!d.layer.empty()) break;
    (l.float_input ? float_layer : int_layer)++;
    ++k;
  }
  if (d.layer.empty()) {
    // Every activation agrees: a tie only when the float network's two scores are within float32
    // rounding of each other (else the scores' own layer differs, a defect).
    const auto scores = r.scores[row].to(torch::kFloat64);
    const double a = scores[float_label].item<double>(), b = scores[integer_label].item<double>();
    d.float_value = a - b;
    d.tie = std::abs(a - b) <= 1e-5 * std::max(1.0, std::max(std::abs(a), std::abs(b)));
    d.layer = d.tie ? "the scores (every activation agrees; the two argmaxes differ at a tie of scores)"
                    : "the scores (every activation agrees, but the float scores of the two labels differ by " +
                          std::to_string(a - b) + ")";
  }
  return d;
}

}  // namespace

std::string Disagreement::text() const {
  std::ostringstream s;
  s << "image " << image << ": float " << float_label << ", integer " << integer_label << "; first difference at "
    << layer << ", channel " << channel << ", position " << position << ": integer input " << accumulator
    << " against thresholds [" << thresholds << "], float " << float_value << " against " << float_threshold
    << (tie ? " (a rounding tie of the float evaluation)" : " (NOT a tie: a defect)");
  return s.str();
}

ParityReport check_parity(train::Experiment& exp, const data::ProblemData& data, const runtime::Engine& engine,
                          int threads) {
  const auto* set = dynamic_cast<const data::TensorDataset*>(data.test.get());
  if (!set) throw Error("the parity check reads IDX and CIFAR test sets");
  exp.net->eval();
  torch::NoGradGuard no_grad;
  ParityReport rep;
  rep.threads = threads > 0 ? threads : at::get_num_threads();
  const int64_t n = set->size();
  rep.images = n;
  const TimedLabels fl = float_labels(exp, *set, rep.threads);
  rep.float_seconds_1 = fl.seconds_1, rep.float_seconds_all = fl.seconds_all;
  const torch::Tensor pixels = set->images().images.contiguous();
  const auto* px = pixels.data_ptr<uint8_t>();
  const TimedLabels il = integer_labels(engine, px, n, rep.threads);
  rep.integer_seconds_1 = il.seconds_1, rep.integer_seconds_all = il.seconds_all;
  const auto labels = set->labels();
  int64_t fc = 0, ic = 0;
  std::vector<int64_t> differ;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = labels[i].item<int64_t>(), f = fl.labels[static_cast<size_t>(i)],
                  q = il.labels[static_cast<size_t>(i)];
    fc += f == y;
    ic += q == y;
    if (f == q)
      ++rep.agree;
    else
      differ.push_back(i);
  }
  BatchReplay cache;
  for (int64_t i : differ)
    rep.disagreements.push_back(explain(exp, *set, engine, px, i, fl.labels[static_cast<size_t>(i)],
                                        il.labels[static_cast<size_t>(i)], differ, cache));
  rep.float_accuracy = 100.0 * static_cast<double>(fc) / static_cast<double>(n);
  rep.integer_accuracy = 100.0 * static_cast<double>(ic) / static_cast<double>(n);
  return rep;
}

}  // namespace quantlab::export_

// The multiple-choice knapsack of adaptive precision (include/kq/adaptive.hpp):
// one option per layer, Σ bytes within a budget, Σ estimated loss minimal.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>

#include "kq/adaptive.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

using Layers = std::vector<std::vector<AllocationChoice>>;

/// Index of each layer's smallest option (fewest bytes; lower loss, then lower index, on ties).
std::vector<int> smallest_options(const Layers& layers) {
  std::vector<int> out;
  for (const auto& opts : layers) {
    int best = 0;
    for (int c = 1; c < int(opts.size()); ++c) {
      const AllocationChoice& a = opts[size_t(c)];
      const AllocationChoice& b = opts[size_t(best)];
      if (a.bytes < b.bytes || (a.bytes == b.bytes && a.loss < b.loss)) best = c;
    }
    out.push_back(best);
  }
  return out;
}

/// Greedy marginal-efficiency allocation: from the smallest options, take the
/// fitting upgrade with the largest loss reduction per extra byte until none fits.
std::vector<int> greedy(const Layers& layers, size_t budget) {
  std::vector<int> pick = smallest_options(layers);
  size_t used = 0;
  for (size_t i = 0; i < layers.size(); ++i) used += layers[i][size_t(pick[i])].bytes;
  for (;;) {
    double best_rate = 0;
    size_t best_layer = 0, best_extra = 0;
    int best_opt = -1;
    for (size_t i = 0; i < layers.size(); ++i) {
      const AllocationChoice& cur = layers[i][size_t(pick[i])];
      for (int c = 0; c < int(layers[i].size()); ++c) {
        const AllocationChoice& o = layers[i][size_t(c)];
        if (o.bytes <= cur.bytes || o.loss >= cur.loss) continue;  // not an upgrade
        const size_t extra = o.bytes - cur.bytes;
        if (extra > budget - used) continue;  // does not fit
        const double rate = (cur.loss - o.loss) / double(extra);
        if (best_opt < 0 || rate > best_rate || (rate == best_rate && extra < best_extra)) {
          best_rate = rate;
          best_layer = i;
          best_opt = c;
          best_extra = extra;
        }
      }
    }
    if (best_opt < 0) return pick;
    used += best_extra;
    pick[best_layer] = best_opt;
  }
}

/// A partial allocation of layers 0..i: its byte and loss sums, and how it was reached.
struct State {
  size_t bytes = 0;
  double loss = 0;
  uint32_t parent = 0;  ///< index in the previous layer's front
  int choice = 0;       ///< option of layer i
};

}  // namespace

std::vector<int> allocate_precision(const Layers& layers, size_t budget_bytes, size_t max_exact_states,
                                    bool* exact) {
  if (exact) *exact = false;  // until the exact program finishes
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].empty()) raise<InvalidArgument>("allocate_precision: layer {} has no options", i);
    for (size_t c = 0; c < layers[i].size(); ++c)
      if (!std::isfinite(layers[i][c].loss) || layers[i][c].loss < 0)
        raise<InvalidArgument>("allocate_precision: layer {} option {} has loss {} (must be finite and >= 0)",
                               i, c, layers[i][c].loss);
  }
  const std::vector<int> smallest = smallest_options(layers);
  // Every sum of chosen bytes (the states add them up, and min_rest below) must fit size_t: the sum of
  // each layer's largest option bounds them all.
  size_t largest = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    size_t m = 0;
    for (const AllocationChoice& o : layers[i]) m = std::max(m, o.bytes);
    if (__builtin_add_overflow(largest, m, &largest))
      raise<InvalidArgument>("allocate_precision: the layers' largest options add up to more than {} bytes",
                             std::numeric_limits<size_t>::max());
  }
  // min_rest[i]: the fewest bytes layers i.. can take.
  std::vector<size_t> min_rest(layers.size() + 1, 0);
  for (size_t i = layers.size(); i-- > 0;) min_rest[i] = min_rest[i + 1] + layers[i][size_t(smallest[i])].bytes;
  if (min_rest[0] > budget_bytes)
    raise<InvalidArgument>(
        "allocate_precision: the budget of {} bytes is below {} bytes, what every layer at its smallest "
        "option takes",
        budget_bytes, min_rest[0]);
  if (max_exact_states == 0) return greedy(layers, budget_bytes);

  // Exact: the Pareto front of (bytes, loss) over layers 0..i, one layer at a time.
  std::vector<std::vector<State>> fronts;
  std::vector<State> front{State{}};
  std::vector<State> next;
  for (size_t i = 0; i < layers.size(); ++i) {
    next.clear();
    for (size_t p = 0; p < front.size(); ++p)
      for (int c = 0; c < int(layers[i].size()); ++c) {
        const AllocationChoice& o = layers[i][size_t(c)];
        const size_t bytes = front[p].bytes + o.bytes;
        if (bytes > budget_bytes - min_rest[i + 1]) continue;  // the rest can no longer fit
        next.push_back(State{bytes, front[p].loss + o.loss, uint32_t(p), c});
      }
    std::sort(next.begin(), next.end(), [](const State& a, const State& b) {
      return std::tie(a.bytes, a.loss, a.parent, a.choice) < std::tie(b.bytes, b.loss, b.parent, b.choice);
    });
    // Keep a state only if it has less loss than every state with fewer (or as many) bytes.
    std::vector<State> kept;
    double best = std::numeric_limits<double>::infinity();
    for (const State& s : next)
      if (s.loss < best) {
        kept.push_back(s);
        best = s.loss;
      }
    if (kept.size() > max_exact_states) return greedy(layers, budget_bytes);
    fronts.push_back(kept);
    front = std::move(kept);
  }
  // The front's last state has the least loss (its loss strictly decreases with bytes).
  if (exact) *exact = true;
  std::vector<int> pick(layers.size(), 0);
  uint32_t idx = uint32_t(front.size() - 1);
  for (size_t i = layers.size(); i-- > 0;) {
    const State& s = fronts[i][idx];
    pick[i] = s.choice;
    idx = s.parent;
  }
  return pick;
}

}  // namespace kq

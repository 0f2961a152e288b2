#include "tokenizer/bpe.hpp"

#include <queue>
#include <utility>

namespace kq::tok {

BpeModel::BpeModel(const std::array<int32_t, 256>& byte_ids, const std::vector<MergeRule>& rules,
                   WholeWords whole_words)
    : byte_ids_(byte_ids), whole_words_(std::move(whole_words)), num_rules_(rules.size()) {
  merges_.reserve(rules.size());
  for (size_t r = 0; r < rules.size(); ++r)
    merges_.insert_or_assign(key(rules[r].left, rules[r].right), Merge{int32_t(r), rules[r].merged});
}

namespace {

/// A candidate merge of the symbol at `pos` with its right neighbour.
struct Candidate {
  int32_t rank;
  int32_t pos;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  const auto n = int32_t(bytes.size());
  if (n == 0) return;
  if (!whole_words_.empty())
    if (const auto it = whole_words_.find(bytes); it != whole_words_.end()) {
      out.push_back(it->second);
      return;
    }
  if (n == 1) {
    out.push_back(byte_ids_[uint8_t(bytes[0])]);
    return;
  }
  // Doubly linked list of symbols; a merged-away symbol gets id -1.
  const auto len = static_cast<size_t>(n);
  std::vector<int32_t> id(len), prev(len), next(len);
  for (int32_t i = 0; i < n; ++i) {
    id[size_t(i)] = byte_ids_[uint8_t(bytes[size_t(i)])];
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    const int32_t r = next[size_t(pos)];
    if (r < 0) return;
    if (const Merge* m = find(id[size_t(pos)], id[size_t(r)])) heap.push({m->rank, pos});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const auto p = size_t(c.pos);
    if (id[p] < 0 || next[p] < 0) continue;  // symbol gone or now last
    const auto r = size_t(next[p]);
    const Merge* m = find(id[p], id[r]);
    if (!m || m->rank != c.rank) continue;  // the pair at p changed since it was queued
    id[p] = m->merged;
    id[r] = -1;
    next[p] = next[r];
    if (next[r] >= 0) prev[size_t(next[r])] = c.pos;
    if (prev[p] >= 0) push(prev[p]);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = next[size_t(i)]) out.push_back(id[size_t(i)]);
}

}  // namespace kq::tok

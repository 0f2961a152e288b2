#include "tokenizer/bpe.hpp"

#include <queue>
#include <utility>

#include "tokenizer/utf8.hpp"

namespace kq::tok {

BpeModel::BpeModel(const std::array<int32_t, 256>& byte_ids, const std::vector<MergeRule>& rules,
                   WholeWords whole_words)
    : byte_ids_(byte_ids), whole_words_(std::move(whole_words)), num_rules_(rules.size()) {
  merges_.reserve(rules.size());
  for (size_t r = 0; r < rules.size(); ++r)
    merges_.insert_or_assign(key(rules[r].left, rules[r].right), Merge{int32_t(r), rules[r].merged});
}

BpeModel::BpeModel(CharSymbols chars, const std::vector<MergeRule>& rules, WholeWords whole_words)
    : BpeModel(std::array<int32_t, 256>{}, rules, std::move(whole_words)) {
  by_chars_ = true;
  chars_ = std::move(chars);
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
  std::vector<int32_t> id;
  if (by_chars_) {
    char_symbols(bytes, id);
  } else {
    if (n == 1) {
      out.push_back(byte_ids_[uint8_t(bytes[0])]);
      return;
    }
    id.resize(size_t(n));
    for (size_t i = 0; i < size_t(n); ++i) id[i] = byte_ids_[uint8_t(bytes[i])];
  }
  merge_all(id, out);
}

void BpeModel::char_symbols(std::string_view word, std::vector<int32_t>& id) const {
  id.reserve(word.size());
  bool unk_pending = false;  // Hugging Face's `unk`: emitted before the next character with a token, or at the end
  for (size_t i = 0; i < word.size();) {
    char32_t cp = 0;
    const size_t len = decode_utf8(word, i, cp);
    const std::string_view ch = word.substr(i, len ? len : 1);  // an ill-formed byte: a character of its own
    i += ch.size();
    if (len)
      if (const auto it = chars_.chars.find(cp); it != chars_.chars.end()) {
        if (unk_pending) id.push_back(chars_.unk);
        unk_pending = false;
        id.push_back(it->second);
        continue;
      }
    bool bytes_known = true;
    for (const char b : ch) bytes_known = bytes_known && chars_.byte_tokens[uint8_t(b)] >= 0;
    if (bytes_known) {
      for (const char b : ch) id.push_back(chars_.byte_tokens[uint8_t(b)]);
      continue;
    }
    if (chars_.unk < 0) continue;  // no unk token: the character is dropped
    if (unk_pending && !chars_.fuse_unk) id.push_back(chars_.unk);
    unk_pending = true;
  }
  if (unk_pending) id.push_back(chars_.unk);
}

void BpeModel::merge_all(std::vector<int32_t>& id, std::vector<int32_t>& out) const {
  const auto n = int32_t(id.size());
  if (n == 0) return;
  // Doubly linked list of symbols; a merged-away symbol gets id -1.
  const auto len = static_cast<size_t>(n);
  std::vector<int32_t> prev(len), next(len);
  for (int32_t i = 0; i < n; ++i) {
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

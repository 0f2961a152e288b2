#include "tokenizer/word_cache.hpp"

#include <mutex>

namespace kq::tok {

bool WordCache::lookup(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kMaxKeyBytes) return false;
  std::shared_lock lock(mu_);
  const auto it = map_.find(word);
  if (it == map_.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void WordCache::insert(std::string_view word, const int32_t* ids, size_t n) {
  if (word.size() > kMaxKeyBytes) return;
  std::unique_lock lock(mu_);
  if (map_.size() >= kMaxEntries) return;
  map_.try_emplace(std::string(word), ids, ids + n);
}

}  // namespace kq::tok

#pragma once
// Thread-safe cache of BPE results per pre-token (words repeat a lot in text).
#include <cstdint>
#include <functional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kq::tok {

/// Maps a pre-token's bytes to its token ids. Bounded: words longer than
/// kMaxKeyBytes are never cached and once kMaxEntries words are stored new
/// ones are not added (the cache never evicts, so results stay stable).
class WordCache {
 public:
  static constexpr size_t kMaxKeyBytes = 64;
  static constexpr size_t kMaxEntries = size_t(1) << 17;

  /// Appends the cached ids of `word` to `out` and returns true, or returns false.
  bool lookup(std::string_view word, std::vector<int32_t>& out) const;
  /// Stores ids for `word` (ignored when too long or full).
  void insert(std::string_view word, const int32_t* ids, size_t n);

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> map_;
};

}  // namespace kq::tok

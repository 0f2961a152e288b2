// Fuzz-style robustness: random byte flips, truncations, length-field edits
// and JSON-token splices of a valid file must either load (and then every
// tensor's bytes are readable) or throw kq::Error — nothing else. Fixed seed,
// so failures reproduce. Run under -fsanitize=address,undefined to catch
// out-of-bounds reads.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "common/test_data.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"

namespace kq {
namespace {

volatile unsigned g_sink = 0;  // keeps the byte reads from being optimised away

std::string base_file() {
  const std::string header =
      R"({"__metadata__":{"format":"pt","k":"v"},)"
      R"("emb":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]},)"
      R"("h.0.w":{"dtype":"BF16","shape":[2,2],"data_offsets":[24,32]},)"
      R"("h.0.q":{"dtype":"I8","shape":[6],"data_offsets":[32,38]},)"
      R"("h.0.s":{"dtype":"F16","shape":[1],"data_offsets":[38,40]},)"
      R"("z":{"dtype":"F64","shape":[0],"data_offsets":[40,40]}})";
  std::string data(40, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char(i * 37 + 1);
  return testing::raw_safetensors(header, data);
}

std::string mutate(const std::string& base, std::mt19937_64& rng) {
  std::string s = base;
  auto pick = [&](size_t n) { return n == 0 ? size_t(0) : size_t(rng() % n); };
  const size_t header_end = 8 + [&] { uint64_t n; std::memcpy(&n, base.data(), 8); return size_t(n); }();
  static const char kTokens[] = "{}[],:\"0123456789-.eE ";
  switch (rng() % 6) {
    case 0:  // flip random bits anywhere
      for (int k = 0, n = 1 + int(rng() % 8); k < n; ++k) s[pick(s.size())] ^= char(1u << (rng() % 8));
      break;
    case 1:  // truncate
      s.resize(pick(s.size()));
      break;
    case 2: {  // rewrite the length field near its true value or anywhere
      uint64_t n = (rng() % 2) ? uint64_t(header_end - 8) + (rng() % 33) - 16 : rng();
      std::memcpy(s.data(), &n, 8);
      break;
    }
    case 3:  // replace header bytes with JSON punctuation/digits
      for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k)
        s[8 + pick(header_end - 8)] = kTokens[pick(sizeof(kTokens) - 1)];
      break;
    case 4: {  // replace a digit run inside the header with a random number
      const size_t at = 8 + pick(header_end - 8);
      size_t b = at;
      while (b < header_end && !std::isdigit(static_cast<unsigned char>(s[b]))) ++b;
      size_t e = b;
      while (e < header_end && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      if (b >= header_end) break;
      const std::string num = std::to_string(rng() % 3 == 0 ? rng() : rng() % 64);
      s = s.substr(0, b) + num + s.substr(e);  // header length unchanged: may now lie
      break;
    }
    default: {  // splice: duplicate a random slice somewhere else
      const size_t a = pick(s.size()), len = pick(std::min<size_t>(32, s.size() - a));
      s.insert(pick(s.size()), s.substr(a, len));
      break;
    }
  }
  return s;
}

TEST(SafetensorsFuzz, MutatedFilesLoadOrThrowKqError) {
  testing::TempDir tmp;
  const auto path = tmp.path / "fuzz.safetensors";
  const std::string base = base_file();
  testing::write_bytes(path, base);
  ASSERT_NO_THROW(TensorStore::open_file(path));

  std::mt19937_64 rng(20240611);
  int loaded = 0, rejected = 0;
  constexpr int kIterations = 4000;
  for (int it = 0; it < kIterations; ++it) {
    const std::string bytes = mutate(base, rng);
    testing::write_bytes(path, bytes);
    try {
      const TensorStore st = TensorStore::open_file(path);
      ++loaded;
      unsigned sum = 0;
      for (const auto& name : st.names()) {
        const Tensor t = st.get(name);
        ASSERT_EQ(t.nbytes(), size_t(t.numel()) * dtype_size(t.dtype()));
        ASSERT_LE(t.nbytes(), bytes.size());
        const auto* p = static_cast<const unsigned char*>(t.raw());
        for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];  // touches every byte of the view
      }
      g_sink = sum;
    } catch (const Error& e) {
      ++rejected;
      ASSERT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      FAIL() << "iteration " << it << ": non-kq exception: " << e.what();
    }
  }
  // Both outcomes must occur, or the mutations are not exercising the reader.
  EXPECT_GT(loaded, kIterations / 50);
  EXPECT_GT(rejected, kIterations / 4);
}

}  // namespace
}  // namespace kq

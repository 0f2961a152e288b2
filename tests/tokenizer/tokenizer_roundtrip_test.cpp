// Round trips (decode(encode(x)) == x for any UTF-8 and any bytes), decode of
// every id, streaming decode and thread safety on the test models' tokenizer.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/utf8.hpp"

using kq::Tokenizer;
using kq::testing::shared_dir;
using Ids = std::vector<int32_t>;

namespace {

const Tokenizer& tiny() {
  static const Tokenizer t = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  return t;
}

/// A random code point from a mix of ranges: ASCII, whitespace, Latin-1,
/// general BMP (no surrogates), CJK, and astral planes up to U+10FFFF.
char32_t random_code_point(std::mt19937& rng) {
  static constexpr char32_t kSpaces[] = {' ', '\t', '\n', '\r', 0x0B, 0x0C, 0xA0, 0x85, 0x2003, 0x3000};
  switch (rng() % 7) {
    case 0: return char32_t(0x20 + rng() % 0x5F);
    case 1: return kSpaces[rng() % std::size(kSpaces)];
    case 2: return char32_t(rng() % 0x100);
    case 3: {
      char32_t c = char32_t(rng() % 0x10000);
      return (c >= 0xD800 && c <= 0xDFFF) ? char32_t('x') : c;
    }
    case 4: return char32_t(0x4E00 + rng() % 0x5000);
    case 5: return char32_t(0x1F300 + rng() % 0x300);  // emoji
    default: return char32_t(0x10000 + rng() % 0x100000);
  }
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = kq::tok::decode_utf8(s, i, cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void expect_ids_in_range(const Ids& ids, int32_t vocab) {
  for (int32_t id : ids) {
    ASSERT_GE(id, 0);
    ASSERT_LT(id, vocab);
  }
}

}  // namespace

TEST(TokenizerRoundTrip, RandomUtf8IncludingAstralPlanes) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const Tokenizer& t = tiny();
  std::mt19937 rng(20240601);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int len = int(rng() % 60);
    for (int i = 0; i < len; ++i) kq::tok::append_utf8(s, random_code_point(rng));
    ASSERT_TRUE(is_valid_utf8(s));
    const Ids ids = t.encode(s);
    expect_ids_in_range(ids, t.vocab_size());
    ASSERT_EQ(t.decode(ids), s) << "iteration " << iter;
    EXPECT_LE(ids.size(), s.size());  // never more tokens than bytes
  }
}

TEST(TokenizerRoundTrip, ArbitraryBytesIncludingInvalidUtf8) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const Tokenizer& t = tiny();
  std::mt19937 rng(7);
  // Hand-picked malformed sequences: lone continuation, truncated 2/3/4-byte
  // sequences, overlong, surrogate, > U+10FFFF, bytes F5-FF, NUL.
  const std::vector<std::string> nasty = {"\x80", "\xC3", "\xE6\x97", "\xF0\x9F\x9A", "\xC0\x80", "\xED\xA0\x80",
                                          "\xF4\x90\x80\x80", "\xF5", "\xFF\xFE", std::string(1, '\0'), "\xE6\x97 x"};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int parts = int(rng() % 12);
    for (int p = 0; p < parts; ++p) {
      switch (rng() % 4) {
        case 0: s += nasty[rng() % nasty.size()]; break;
        case 1: s.push_back(char(rng() % 256)); break;
        case 2: kq::tok::append_utf8(s, random_code_point(rng)); break;
        default: s += " word's 42"; break;
      }
    }
    const Ids ids = t.encode(s);
    expect_ids_in_range(ids, t.vocab_size());
    ASSERT_EQ(t.decode(ids), s) << "iteration " << iter;
  }
  // Every single byte value and all 65536 byte pairs.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const std::string s{char(a), char(b)};
      ASSERT_EQ(t.decode(t.encode(s)), s) << a << " " << b;
    }
  }
}

TEST(TokenizerRoundTrip, InvalidBytesFormTheirOwnPreTokens) {
  // Documented behaviour: bytes the regex cannot match (invalid UTF-8) form one
  // pre-token per maximal run; valid text around them splits as usual.
  kq::tok::Pretokenizer pre;
  std::vector<std::string_view> p;
  pre.split("ab\xFF\xFE" "cd \xC3 x\xE6\x97", p);
  EXPECT_EQ(p, (std::vector<std::string_view>{"ab", "\xFF\xFE", "cd", " ", "\xC3", " x", "\xE6\x97"}));
  if (!kq::testing::have_shared("models/gpt2-tiny")) return;
  const Tokenizer& t = tiny();
  Ids want = t.encode("ab");
  for (int32_t id : t.encode("\xFF\xFE")) want.push_back(id);
  for (int32_t id : t.encode("cd")) want.push_back(id);
  EXPECT_EQ(t.encode("ab\xFF\xFE" "cd"), want);
}

TEST(TokenizerRoundTrip, DecodeEveryId) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const Tokenizer& t = tiny();
  std::string all;
  Ids every;
  for (int32_t id = 0; id < t.vocab_size(); ++id) {
    const std::string& bytes = t.decode_token(id);
    ASSERT_FALSE(bytes.empty()) << id;
    EXPECT_EQ(t.decode(Ids{id}), bytes);
    EXPECT_EQ(t.token_to_id(t.id_to_token(id)), id);
    // Byte-level tokens: the stored string is exactly the bytes' GPT-2 symbols.
    if (!t.is_special(id)) {
      EXPECT_EQ(kq::tok::bytes_to_symbols(bytes), t.id_to_token(id)) << id;
    }
    all += bytes;
    every.push_back(id);
  }
  EXPECT_EQ(t.decode(every), all);
  EXPECT_THROW(t.decode_token(-1), kq::InvalidArgument);
  EXPECT_THROW(t.decode_token(t.vocab_size()), kq::InvalidArgument);
  EXPECT_THROW(t.decode(Ids{1, 2, 1 << 30}), kq::InvalidArgument);
  EXPECT_EQ(t.token_to_id("no such token here"), std::nullopt);
}

TEST(TokenizerStream, EmitsOnlyCompleteUtf8) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const Tokenizer& t = tiny();
  const std::string text = "Ünïcödé — ✓ 日本語 🚀 done";
  const Ids ids = t.encode(text);
  kq::StreamDecoder sd(t);
  std::string out;
  bool held_something = false;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    EXPECT_TRUE(is_valid_utf8(piece)) << "token " << id;
    held_something |= sd.pending() > 0;
    out += piece;
  }
  out += sd.flush();
  EXPECT_EQ(out, text);
  EXPECT_TRUE(held_something);  // the case splits characters across tokens
}

TEST(TokenizerStream, HoldsOnlyValidPrefixes) {
  kq::StreamDecoder sd;  // bytes only
  EXPECT_THROW(sd.push(1), kq::InvalidArgument);
  EXPECT_EQ(sd.push_bytes("a\xE6\x97"), "a");
  EXPECT_EQ(sd.pending(), 2u);
  EXPECT_EQ(sd.push_bytes("\xA5!"), "\xE6\x97\xA5!");  // 日!
  EXPECT_EQ(sd.push_bytes("\xF0\x9F"), "");
  EXPECT_EQ(sd.push_bytes("\x9A"), "");
  EXPECT_EQ(sd.push_bytes("\x80"), "\xF0\x9F\x9A\x80");  // 🚀
  // Bytes that can never become valid are passed through, not held.
  EXPECT_EQ(sd.push_bytes("\xFF"), "\xFF");
  EXPECT_EQ(sd.push_bytes("\xC0"), "\xC0");         // overlong lead
  EXPECT_EQ(sd.push_bytes("\xED\xA0"), "\xED\xA0");  // surrogate
  EXPECT_EQ(sd.push_bytes("\xE6\x41"), "\xE6\x41");  // broken sequence
  EXPECT_EQ(sd.push_bytes("x\xC3"), "x");
  EXPECT_EQ(sd.flush(), "\xC3");  // incomplete at the end: flushed as is
  EXPECT_EQ(sd.pending(), 0u);
  EXPECT_EQ(sd.flush(), "");
}

TEST(TokenizerStream, ReplaceModeEmitsValidUtf8Only) {
  using Mode = kq::StreamDecoder::InvalidBytes;
  const std::string fffd = "\xEF\xBF\xBD";
  kq::StreamDecoder sd(Mode::Replace);
  EXPECT_EQ(sd.push_bytes("\xA6"), fffd);                        // a lone continuation byte
  EXPECT_EQ(sd.push_bytes("\xEF\xBC"), "");                      // held: could still become valid
  EXPECT_EQ(sd.push_bytes(" "), fffd + " ");                     // one U+FFFD for the maximal subpart
  EXPECT_EQ(sd.push_bytes("a\xE6\x97"), "a");                    // valid prefixes are still held ...
  EXPECT_EQ(sd.push_bytes("\xA5"), "\xE6\x97\xA5");              // ... and completed (日)
  EXPECT_EQ(sd.push_bytes("\xC0\xAF\xFF"), fffd + fffd + fffd);  // overlong lead, stray byte, invalid byte
  EXPECT_EQ(sd.push_bytes("\xED\xA0\x80"), fffd + fffd + fffd);  // a surrogate: E0..9F only after ED
  EXPECT_EQ(sd.push_bytes("\xF0\x9F\x9A"), "");
  EXPECT_EQ(sd.flush(), fffd);  // incomplete at the end
  // Every piece the replace mode returns is valid UTF-8, on random bytes too.
  std::mt19937 rng(7);
  kq::StreamDecoder r(Mode::Replace);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(size_t(rng() % 4), '\0');
    for (char& c : bytes) c = char(rng() & 0xFF);
    EXPECT_TRUE(is_valid_utf8(r.push_bytes(bytes)));
  }
  EXPECT_TRUE(is_valid_utf8(r.flush()));
}

TEST(TokenizerRoundTrip, ConcurrentEncodeIsConsistent) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const Tokenizer t = Tokenizer::load(shared_dir() / "models/gpt2-tiny");  // fresh, empty cache
  std::string text;
  std::mt19937 rng(99);
  for (int i = 0; i < 4000; ++i) {
    kq::tok::append_utf8(text, random_code_point(rng));
    if (i % 5 == 0) text += " the";
  }
  const Tokenizer reference = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  const Ids want = reference.encode(text);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < got.size(); ++k) {
    const Tokenizer copy = t;  // copies share tables and cache
    threads.emplace_back([copy, &text, &got, k] {
      for (int r = 0; r < 3; ++r) got[k] = copy.encode(text);
    });
  }
  for (auto& th : threads) th.join();
  for (const Ids& g : got) EXPECT_EQ(g, want);
}

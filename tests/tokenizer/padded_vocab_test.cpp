// A model whose vocabulary is padded beyond its tokenizer (config.json
// vocab_size rounded up to a multiple of 64/128): the padding ids decode to
// nothing once the tokenizer is bound to the model (Tokenizer::for_model);
// ids outside the model's vocabulary stay errors naming both sizes.
#include <gtest/gtest.h>

#include <filesystem>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"

using kq::StreamDecoder;
using kq::Tokenizer;

namespace {

// The repo's demo model: vocab 8192 (0..8191), "<|endoftext|>" = 0.
Tokenizer demo_tokenizer() {
  return Tokenizer::load(kq::testing::demo_model());
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const kq::InvalidArgument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InvalidArgument thrown";
  return "";
}

TEST(PaddedVocab, PaddingIdsDecodeToNothing) {
  const Tokenizer tok = demo_tokenizer();
  ASSERT_EQ(tok.vocab_size(), 8192);
  const Tokenizer bound = tok.for_model(8256, "models/gpt2-tiny");  // padded to a multiple of 64
  EXPECT_EQ(bound.vocab_size(), 8192);
  EXPECT_EQ(bound.model_vocab_size(), 8256);
  EXPECT_EQ(tok.model_vocab_size(), 8192);

  const std::vector<int32_t> hello = tok.encode("Hello world");
  ASSERT_GE(hello.size(), 2u);
  std::vector<int32_t> ids = {8192, hello[0], 8255, 8200};
  ids.insert(ids.end(), hello.begin() + 1, hello.end());
  ids.push_back(8192);
  EXPECT_EQ(bound.decode(ids), "Hello world");
  EXPECT_EQ(bound.decode_token(8192), "");
  EXPECT_EQ(bound.decode_token(8255), "");
  EXPECT_FALSE(bound.is_special(8192));
  // Real tokens decode as before, in the bound and the unbound tokenizer.
  EXPECT_EQ(bound.decode(hello), tok.decode(hello));
  EXPECT_EQ(bound.decode_token(hello[0]), tok.decode_token(hello[0]));
  // Encoding is unchanged and never produces a padding id.
  EXPECT_EQ(bound.encode("Hello world"), hello);
  // A padding id has no vocabulary string.
  EXPECT_NE(error_of([&] { (void)bound.id_to_token(8192); }).find("padding id"), std::string::npos);
}

TEST(PaddedVocab, StreamDecoderSkipsPaddingIds) {
  const Tokenizer bound = demo_tokenizer().for_model(8320, "models/gpt2-tiny");
  // "日本" is split into byte-level tokens that end mid-character; a padding
  // id between them must neither print nor break the held-back sequence.
  const std::vector<int32_t> ids = bound.encode("日本 ok");
  StreamDecoder dec(bound, StreamDecoder::InvalidBytes::Replace);
  std::string out;
  for (const int32_t id : ids) {
    out += dec.push(id);
    out += dec.push(8300);
  }
  out += dec.flush();
  EXPECT_EQ(out, "日本 ok");
}

TEST(PaddedVocab, IdsOutsideTheModelVocabularyAreErrorsNamingBothSizes) {
  const Tokenizer bound = demo_tokenizer().for_model(8256, "models/gpt2-tiny");
  for (const int32_t bad : {8256, 9000, -1}) {
    const std::vector<int32_t> ids = {1, bad};
    const std::string msg = error_of([&] { (void)bound.decode(ids); });
    EXPECT_NE(msg.find("token id " + std::to_string(bad)), std::string::npos) << msg;
    EXPECT_NE(msg.find("the model has 8256 ids"), std::string::npos) << msg;
    EXPECT_NE(msg.find("has 8192"), std::string::npos) << msg;  // the tokenizer's size, named as such
    EXPECT_NE(error_of([&] { (void)bound.decode_token(bad); }), "");
  }
}

TEST(PaddedVocab, UnboundTokenizerStillRejectsIdsBeyondItsVocabulary) {
  const Tokenizer tok = demo_tokenizer();
  const std::string msg = error_of([&] { (void)tok.decode_token(8192); });
  EXPECT_NE(msg.find("token id 8192 is not in the vocabulary"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has 8192 ids (0..8191)"), std::string::npos) << msg;
  StreamDecoder dec(tok);
  EXPECT_THROW((void)dec.push(8192), kq::InvalidArgument);
}

TEST(PaddedVocab, ForModelChecksTheSizes) {
  const Tokenizer tok = demo_tokenizer();
  EXPECT_THROW((void)tok.for_model(8000, "some/model"), kq::FormatError);  // another model's tokenizer
  EXPECT_THROW((void)tok.for_model(int64_t(1) << 32, "some/model"), kq::InvalidArgument);
  // Exactly the tokenizer's size: no padding ids, 8192 is out of range.
  const Tokenizer same = tok.for_model(8192, "some/model");
  EXPECT_THROW((void)same.decode_token(8192), kq::InvalidArgument);
}

// A size of 0 or below was a FormatError saying the tokenizer and the model "do not belong together": it is no
// vocabulary size at all, an InvalidArgument naming the argument.
TEST(PaddedVocab, ForModelRefusesAnImpossibleSizeNamingTheArgument) {
  const Tokenizer tok = demo_tokenizer();
  for (const int64_t n : {int64_t(0), int64_t(-5)}) {
    const std::string msg = error_of([&] { (void)tok.for_model(n, "some/model"); });
    EXPECT_NE(msg.find("Tokenizer::for_model: model_vocab must be a vocabulary size >= 1, got " + std::to_string(n)),
              std::string::npos)
        << msg;
  }
}

// A moved-from tokenizer that had been bound with for_model still answered model_vocab_size() (the bound size);
// every member of a moved-from tokenizer throws.
TEST(PaddedVocab, MovedFromBoundTokenizerThrowsToo) {
  Tokenizer t = demo_tokenizer().for_model(8256, "models/gpt2-tiny");
  const Tokenizer u = std::move(t);
  EXPECT_EQ(u.model_vocab_size(), 8256);
  // NOLINTBEGIN(bugprone-use-after-move): the documented moved-from state
  const std::string msg = error_of([&] { (void)t.model_vocab_size(); });
  EXPECT_NE(msg.find("Tokenizer: moved-from tokenizer (it has no tables)"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { (void)t.for_model(-5, "d"); }).find("moved-from"), std::string::npos);
  // NOLINTEND(bugprone-use-after-move)
}

}  // namespace

// tokenizer.json / tokenizer_config.json robustness: every one-place mutation
// of a valid file (each value replaced by every JSON type and out-of-range
// numbers, each member or element removed; tests/common/json_mutations.hpp)
// either loads — and then encodes and decodes text without throwing — or is
// refused with kq::Error (FormatError, Unsupported), never another exception.
// The base is the shipped demo model's byte-level BPE tokenizer with its
// vocabulary cut to the 256 byte symbols and the first merges, so that the
// ~1,500 loads take a second.
#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_mutations.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/tokenizer_test_util.hpp"

namespace kq {
namespace {
using nlohmann::json;
namespace fs = std::filesystem;

fs::path demo_dir() { return kq::testing::demo_model(); }

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

/// The demo tokenizer.json with model.vocab cut to <|endoftext|>, the byte
/// symbols and the results of the first `merges` merges whose parts are kept.
json small_demo_tokenizer(size_t merges) {
  json t = read_json(demo_dir() / "tokenizer.json");
  json vocab = json::object();
  vocab["<|endoftext|>"] = 0;
  for (int b = 0; b < 256; ++b) vocab[tok::bytes_to_symbols(std::string(1, char(b)))] = 1 + b;
  json kept = json::array();
  for (const json& m : t["model"]["merges"]) {
    if (kept.size() == merges) break;
    const std::string s = m.is_array() ? m[0].get<std::string>() + " " + m[1].get<std::string>() : m.get<std::string>();
    const std::string a = s.substr(0, s.find(' ')), b = s.substr(s.find(' ') + 1);
    if (!vocab.contains(a) || !vocab.contains(b) || vocab.contains(a + b)) continue;
    vocab[a + b] = int(vocab.size());
    kept.push_back(m);
  }
  t["model"]["vocab"] = vocab;
  t["model"]["merges"] = kept;
  return t;
}

/// Loads the folder, and on success encodes and decodes a text; returns the
/// failure to report ("" when the outcome is one the contract allows).
std::string check_load(const fs::path& dir) {
  try {
    const auto previous = set_warning_handler([](const std::string&) {});
    struct Restore {
      WarningHandler h;
      ~Restore() { set_warning_handler(std::move(h)); }
    } restore{previous};
    const Tokenizer tok = Tokenizer::load(dir);
    try {
      const std::vector<int32_t> ids = tok.encode("Hello w\xC3\xB6rld 123\n<|endoftext|> the end");
      (void)tok.decode(ids);
    } catch (const std::exception& e) {
      return std::string("loaded, then encode/decode threw: ") + e.what();
    }
  } catch (const Error&) {
  } catch (const std::exception& e) {
    return std::string("not a kq::Error: ") + e.what();
  }
  return "";
}

TEST(TokenizerMutation, TokenizerJsonMutationsLoadOrAreRefusedWithKqErrors) {
  const json base = small_demo_tokenizer(40);
  ASSERT_EQ(base["model"]["merges"].size(), 40u);
  testing::TempDir dir;
  fs::copy_file(demo_dir() / "tokenizer_config.json", dir.path / "tokenizer_config.json");
  testing::write_file(dir.path / "tokenizer.json", base.dump());
  ASSERT_EQ(check_load(dir.path), "");
  // The vocabulary's members beyond three are left alone (the same code reads each).
  const auto skip = [](const json::json_pointer& p) {
    return p.parent_pointer().to_string() == "/model/vocab" && p.back() != "<|endoftext|>" && p.back() != "!" &&
           p.back() != "\xC4\xA0";  // Ġ
  };
  size_t n = 0;
  for (const testing::JsonMutation& m : testing::json_mutations(base, 4, 3, skip)) {
    testing::write_file(dir.path / "tokenizer.json", m.doc.dump());
    EXPECT_EQ(check_load(dir.path), "") << "tokenizer.json " << m.what;
    ++n;
  }
  EXPECT_GT(n, 500u);
}

TEST(TokenizerMutation, TokenizerConfigMutationsLoadOrAreRefusedWithKqErrors) {
  testing::TempDir dir;
  testing::write_file(dir.path / "tokenizer.json", small_demo_tokenizer(40).dump());
  json base = read_json(demo_dir() / "tokenizer_config.json");
  // The keys transformers' tokenizer_config.json may hold that kq reads.
  base["add_bos_token"] = false;
  base["added_tokens_decoder"] = {{"0", {{"content", "<|endoftext|>"}, {"lstrip", false}, {"normalized", false},
                                         {"rstrip", false}, {"single_word", false}, {"special", true}}}};
  base["pad_token"] = {{"content", "<|endoftext|>"}, {"lstrip", false}, {"normalized", false}};
  testing::write_file(dir.path / "tokenizer_config.json", base.dump());
  ASSERT_EQ(check_load(dir.path), "");
  for (const testing::JsonMutation& m : testing::json_mutations(base)) {
    testing::write_file(dir.path / "tokenizer_config.json", m.doc.dump());
    EXPECT_EQ(check_load(dir.path), "") << "tokenizer_config.json " << m.what;
  }
}

}  // namespace
}  // namespace kq

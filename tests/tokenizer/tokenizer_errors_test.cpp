// Malformed or unsupported tokenizer files give FormatError / Unsupported
// naming the file, never a crash.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/tokenizer_test_util.hpp"

using kq::Tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

using kq::testing::expect_error_containing;
using kq::testing::load_collecting_warnings;
using kq::testing::write_file;

namespace {

json byte_vocab() {
  json v = json::object();
  for (int b = 0; b < 256; ++b) v[kq::tok::bytes_to_symbols(std::string(1, char(b)))] = b;
  v["ab"] = 256;
  v["<|endoftext|>"] = 257;
  return v;
}

/// A minimal valid tokenizer.json (byte-level BPE, GPT-2 regex).
json tokenizer_json() {
  return json{{"version", "1.0"},
              {"added_tokens", json::array({json{{"id", 257}, {"content", "<|endoftext|>"}, {"special", true}}})},
              {"normalizer", nullptr},
              {"pre_tokenizer", json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"model", json{{"type", "BPE"}, {"vocab", byte_vocab()}, {"merges", json::array({"a b"})}}}};
}

}  // namespace

TEST(TokenizerErrors, ValidMiniFilesLoad) {
  kq::testing::TempDir tmp;
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  write_file(tmp.path / "merges.txt", "#version: 0.2\r\na b\r\n");
  const Tokenizer a = Tokenizer::load(tmp.path);
  EXPECT_EQ(a.encode("abc"), (std::vector<int32_t>{256, 'c'}));
  EXPECT_EQ(a.eos_token_id(), 257);
  kq::testing::TempDir tmp2;
  json j = tokenizer_json();
  write_file(tmp2.path / "tokenizer.json", j.dump());
  EXPECT_EQ(Tokenizer::load(tmp2.path).encode("abc"), (std::vector<int32_t>{256, 'c'}));
  j["model"]["merges"] = json::array({json::array({"a", "b"})});  // pair form
  write_file(tmp2.path / "tokenizer.json", j.dump());
  EXPECT_EQ(Tokenizer::load(tmp2.path).encode("ab"), (std::vector<int32_t>{256}));
}

TEST(TokenizerErrors, MissingFiles) {
  kq::testing::TempDir tmp;
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path / "nope"); }, "nope");
  // Tester 24 (F8): "" said ": not a directory"; named as Model::load("") names it.
  expect_error_containing<kq::InvalidArgument>([&] { Tokenizer::load(""); },
                                               "Tokenizer::load: the model folder path is empty");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "no tokenizer files");
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "merges.txt");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(tmp.path / "vocab.json", tmp.path / "m.txt"); },
                                           "m.txt");
}

TEST(TokenizerErrors, BadVocabAndMerges) {
  kq::testing::TempDir tmp;
  const fs::path v = tmp.path / "vocab.json", m = tmp.path / "merges.txt";
  write_file(m, "#version: 0.2\na b\n");
  write_file(v, "{\"a\": 1,");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "vocab.json");
  write_file(v, "[1, 2]");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "vocab.json");
  json bad = byte_vocab();
  bad["zz"] = "seven";
  write_file(v, bad.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "non-integer");
  bad = byte_vocab();
  bad["zz"] = -3;
  write_file(v, bad.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "-3");
  bad = byte_vocab();
  bad["zz"] = 1 << 23;  // in range, but would make the id tables mostly empty
  write_file(v, bad.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "too sparse");
  bad = byte_vocab();
  bad["zz"] = 256;  // same id as "ab"
  write_file(v, bad.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "id 256");
  bad = byte_vocab();
  bad.erase(kq::tok::bytes_to_symbols("\n"));
  write_file(v, bad.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "byte 0x0A");
  write_file(v, byte_vocab().dump());
  write_file(m, "#version: 0.2\na q\n");  // both are byte tokens, but "aq" is not in the vocabulary
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "merged token 'aq'");
  write_file(m, "#version: 0.2\na b\nx yz\n");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "'yz' is not in the vocabulary");
  write_file(m, "#version: 0.2\na b c\n");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "merges.txt: line 2");
  write_file(m, "#version: 0.2\nab\n");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::from_files(v, m); }, "merges.txt: line 2");
}

// Tester finding: Hugging Face's slow tokenizer reads merges.txt as read().split("\n")[1:-1], dropping line 1
// and what follows the last newline; kq used a line 1 that is a merge (no "#version" line: 'a  b   c    d' gave 8
// tokens of gpt2-tiny where Hugging Face gives 11) and a last merge without a newline. The first is refused naming
// the file and line 1, the second dropped as there, with a warning.
TEST(TokenizerErrors, MergesTxtLinesAreTheOnesHuggingFaceReads) {
  kq::testing::TempDir tmp;
  const fs::path m = tmp.path / "merges.txt";
  json vocab = byte_vocab();
  vocab["cd"] = 258;
  write_file(tmp.path / "vocab.json", vocab.dump());
  write_file(m, "a b\nc d\n");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); },
                                           m.string() + ": line 1 'a b' is not the \"#version\" line: Hugging "
                                                        "Face's slow tokenizer skips line 1 of merges.txt");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "add a '#version: 0.2' line");
  std::vector<std::string> warnings;
  for (const std::string ok : {"#version: 0.2\na b\nc d\n", "\na b\nc d\n", "#version: 0.2\r\na b\r\nc d\r"}) {
    write_file(m, ok);
    EXPECT_EQ(load_collecting_warnings(tmp.path, warnings).encode("abcd"), (std::vector<int32_t>{256, 258})) << ok;
  }
  EXPECT_TRUE(warnings.empty());
  write_file(m, "#version: 0.2\na b\nc d");
  EXPECT_EQ(load_collecting_warnings(tmp.path, warnings).encode("abcd"), (std::vector<int32_t>{256, 'c', 'd'}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind(m.string() + ": the last line (3, 'c d') does not end with a newline; Hugging Face's "
                                           "slow tokenizer drops it",
                              0),
            0u)
      << warnings[0];
}

TEST(TokenizerErrors, BadTokenizerJson) {
  kq::testing::TempDir tmp;
  const fs::path f = tmp.path / "tokenizer.json";
  write_file(f, "not json");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "tokenizer.json");
  json j = tokenizer_json();
  j["model"]["merges"] = json::array({42});
  write_file(f, j.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "model.merges[0]");
  j = tokenizer_json();
  j["model"]["merges"] = json::array({"a zz"});
  write_file(f, j.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "'zz' is not in the vocabulary");
  j = tokenizer_json();
  j["model"].erase("vocab");
  write_file(f, j.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "\"vocab\"");
  j = tokenizer_json();
  j["added_tokens"][0] = json{{"id", 5}, {"content", "<|x|>"}};  // id 5 is byte token "\x05"
  write_file(f, j.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "'<|x|>' has id 5, which already");
  j = tokenizer_json();
  j["pre_tokenizer"]["add_prefix_space"] = "yes";  // wrong JSON type
  write_file(f, j.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "tokenizer.json");
}

TEST(TokenizerErrors, UnsupportedTokenizerJson) {
  kq::testing::TempDir tmp;
  const fs::path f = tmp.path / "tokenizer.json";
  json j = tokenizer_json();
  j["model"]["type"] = "WordPiece";
  write_file(f, j.dump());
  expect_error_containing<kq::Unsupported>([&] { Tokenizer::load(tmp.path); }, "WordPiece");
  j = tokenizer_json();
  j["pre_tokenizer"] = json{{"type", "Metaspace"}};
  write_file(f, j.dump());
  expect_error_containing<kq::Unsupported>([&] { Tokenizer::load(tmp.path); }, "Metaspace");
  j = tokenizer_json();
  j["normalizer"] = json{{"type", "Lowercase"}};  // (NFC is supported: tokenizer_normalizer_test.cpp)
  write_file(f, j.dump());
  expect_error_containing<kq::Unsupported>([&] { Tokenizer::load(tmp.path); }, "Lowercase");
  j = tokenizer_json();
  j["model"]["byte_fallback"] = true;
  write_file(f, j.dump());
  expect_error_containing<kq::Unsupported>([&] { Tokenizer::load(tmp.path); }, "byte_fallback");
}

TEST(TokenizerErrors, TokenizerConfig) {
  kq::testing::TempDir tmp;
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  write_file(tmp.path / "merges.txt", "#version: 0.2\na b\n");
  write_file(tmp.path / "tokenizer_config.json", json{{"eos_token", 3}}.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "tokenizer_config.json");
  // Object form and added_tokens_decoder: "ab" (id 256) becomes a special token named by bos_token.
  write_file(tmp.path / "tokenizer_config.json",
        json{{"bos_token", json{{"content", "ab"}}},
             {"added_tokens_decoder", json{{"256", json{{"content", "ab"}, {"special", true}}}}}}
            .dump());
  const Tokenizer t = Tokenizer::load(tmp.path);
  EXPECT_EQ(t.bos_token_id(), 256);
  EXPECT_EQ(t.eos_token_id(), 257);  // default "<|endoftext|>"
  EXPECT_TRUE(t.is_special(256));
  EXPECT_EQ(t.encode("a<|endoftext|>", {.allow_special = true}), (std::vector<int32_t>{'a', 257}));
  EXPECT_EQ(t.encode("a<|endoftext|>").size(), 14u);
  write_file(tmp.path / "tokenizer_config.json", json{{"added_tokens_decoder", json{{"abc", json::object()}}}}.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, "'abc'");
}

// Fresh-user finding: a tokenizer_config.json whose eos_token (or bos_token)
// is not in the vocabulary made every command fail (FormatError), although
// Hugging Face transformers loads such a tokenizer. It is a warning naming the
// file and the token, and the tokenizer has no such token (not even the
// "<|endoftext|>" default: the config named another one). unk_token and
// pad_token are not used by kq: not in the vocabulary is not even a warning.
TEST(TokenizerErrors, SpecialTokenNotInTheVocabularyIsAWarningAndAbsent) {
  kq::testing::TempDir tmp;
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  write_file(tmp.path / "merges.txt", "#version: 0.2\na b\n");
  std::vector<std::string> warnings;
  write_file(tmp.path / "tokenizer_config.json",
        json{{"eos_token", "</s>"}, {"bos_token", json{{"content", "<s>"}}}, {"unk_token", "<unk>"},
             {"pad_token", "<pad>"}}
            .dump());
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  EXPECT_FALSE(t.eos_token_id().has_value());
  EXPECT_FALSE(t.bos_token_id().has_value());
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{256, 'c'}));  // otherwise a working tokenizer
  ASSERT_EQ(warnings.size(), 2u);
  const std::string cfg = (tmp.path / "tokenizer_config.json").string();
  for (const auto& [w, needle] : {std::pair{warnings[0], std::string("bos_token '<s>'")},
                                  std::pair{warnings[1], std::string("eos_token '</s>'")}}) {
    EXPECT_NE(w.find(cfg), std::string::npos) << w;
    EXPECT_NE(w.find(needle), std::string::npos) << w;
    EXPECT_NE(w.find("not in the vocabulary"), std::string::npos) << w;
  }
  // A token the vocabulary has is still found, and a huge absent name is cut in the warning.
  warnings.clear();
  write_file(tmp.path / "tokenizer_config.json",
        json{{"bos_token", "ab"}, {"eos_token", std::string(1u << 20, 'z')}}.dump());
  const Tokenizer u = load_collecting_warnings(tmp.path, warnings);
  EXPECT_EQ(u.bos_token_id(), 256);
  EXPECT_FALSE(u.eos_token_id().has_value());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_LT(warnings[0].size(), 400u);
}

// Fresh-user finding: an empty merges.txt (no tokenizer.json) was accepted and
// every byte became its own token (6859 tokens for the demo text instead of
// 1655), with a plausible-looking perplexity.
TEST(TokenizerErrors, NoMergesForAVocabularyWithMultiByteTokensIsAnError) {
  kq::testing::TempDir tmp;
  const fs::path v = tmp.path / "vocab.json", m = tmp.path / "merges.txt";
  write_file(v, byte_vocab().dump());  // 256 bytes + "ab" + "<|endoftext|>"
  for (const std::string merges : {"", "#version: 0.2\n", "\n\n"}) {
    write_file(m, merges);
    expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); },
                                             m.string() + ": no merges, but the vocabulary (" + v.string() +
                                                 ") has 1 multi-byte tokens (e.g. 'ab')");
  }
  // The same rule for tokenizer.json's model.merges.
  kq::testing::TempDir tmp2;
  json j = tokenizer_json();
  j["model"]["merges"] = json::array();
  write_file(tmp2.path / "tokenizer.json", j.dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp2.path); }, "tokenizer.json: no merges");
  // A byte-only vocabulary (special tokens aside) needs no merges: still loads.
  json bytes_only = byte_vocab();
  bytes_only.erase("ab");
  write_file(v, bytes_only.dump());
  write_file(m, "");
  const Tokenizer t = Tokenizer::load(tmp.path);
  EXPECT_EQ(t.encode("ab<|endoftext|>", {.allow_special = true}), (std::vector<int32_t>{'a', 'b', 257}));
}

// Fresh-user finding: a tokenizer.json that is a directory was skipped without
// the "(tokenizer.json not used: ...)" note an unsupported one gets.
TEST(TokenizerErrors, TokenizerJsonThatIsNoFileIsNamedInTheSource) {
  kq::testing::TempDir tmp;
  fs::create_directories(tmp.path / "tokenizer.json");
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); },
                                           (tmp.path / "tokenizer.json").string() + " is a directory, not a file");
  write_file(tmp.path / "merges.txt", "#version: 0.2\na b\n");
  const Tokenizer t = Tokenizer::load(tmp.path);
  EXPECT_EQ(t.source(), "vocab.json + merges.txt (tokenizer.json not used: " +
                            (tmp.path / "tokenizer.json").string() + " is a directory, not a file)");
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{256, 'c'}));
  fs::remove(tmp.path / "tokenizer.json");
  fs::create_symlink(tmp.path / "gone.json", tmp.path / "tokenizer.json");
  EXPECT_EQ(Tokenizer::load(tmp.path).source(), "vocab.json + merges.txt (tokenizer.json not used: " +
                                                    (tmp.path / "tokenizer.json").string() +
                                                    " is a link to a missing file)");
  // A FIFO or a device is named for what it is (it said "is not a regular file"); neither is opened.
  fs::remove(tmp.path / "tokenizer.json");
  ASSERT_EQ(::mkfifo((tmp.path / "tokenizer.json").c_str(), 0600), 0);
  EXPECT_EQ(Tokenizer::load(tmp.path).source(), "vocab.json + merges.txt (tokenizer.json not used: " +
                                                    (tmp.path / "tokenizer.json").string() +
                                                    " is a FIFO (named pipe), not a regular file)");
  fs::remove(tmp.path / "tokenizer.json");
  fs::create_symlink("/dev/zero", tmp.path / "tokenizer.json");
  EXPECT_EQ(Tokenizer::load(tmp.path).source(), "vocab.json + merges.txt (tokenizer.json not used: " +
                                                    (tmp.path / "tokenizer.json").string() +
                                                    " is a character device, not a regular file)");
}

// Fresh-user finding: a tokenizer_config.json that is not a regular file (a
// folder, a FIFO, a link to /dev/zero) was skipped without a word, dropping
// its settings (add_bos_token, bos_token, added tokens), where a
// generation_config.json like it is an error, kq quantize refuses it and
// transformers fails to open it: now a FormatError naming it for what it is.
// A merges.txt that is a FIFO was "file not found". Nothing here opens a FIFO:
// the loader checks the kind first (a regression fails, it does not hang).
TEST(TokenizerErrors, SideFilesThatAreNoRegularFilesAreNamedNotSkipped) {
  kq::testing::TempDir tmp;
  const fs::path cfg = tmp.path / "tokenizer_config.json";
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  write_file(tmp.path / "merges.txt", "#version: 0.2\na b\n");
  const auto expect_cfg_error = [&](const std::string& why) {
    expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, cfg.string() + ": " + why);
  };
  fs::create_directory(cfg);
  expect_cfg_error("is a directory, not a file");
  fs::remove(cfg);
  ASSERT_EQ(::mkfifo(cfg.c_str(), 0600), 0);
  expect_cfg_error("is a FIFO (named pipe), not a regular file");
  fs::remove(cfg);
  fs::create_symlink("/dev/zero", cfg);
  expect_cfg_error("is a character device, not a regular file");
  fs::remove(cfg);
  fs::create_symlink(tmp.path / "gone.json", cfg);
  expect_cfg_error("is a symbolic link to '" + (tmp.path / "gone.json").string() + "', which does not exist");
  write_file(tmp.path / "tokenizer.json", tokenizer_json().dump());  // the tokenizer.json route alike
  expect_cfg_error("is a symbolic link to");
  fs::remove(cfg);
  write_file(cfg, R"({"add_bos_token": false})");  // a regular one is read, as before
  EXPECT_EQ(Tokenizer::load(tmp.path).encode("abc"), (std::vector<int32_t>{256, 'c'}));

  // merges.txt a FIFO: named as one, without a tokenizer.json and beside a tokenizer.json that is no file.
  fs::remove(cfg);
  fs::remove(tmp.path / "tokenizer.json");
  const fs::path merges = tmp.path / "merges.txt";
  fs::remove(merges);
  ASSERT_EQ(::mkfifo(merges.c_str(), 0600), 0);
  kq::testing::expect_error<kq::FormatError>(
      [&] { Tokenizer::load(tmp.path); },
      {merges.string() + ": is a FIFO (named pipe), not a regular file (needed with " +
           (tmp.path / "vocab.json").string() + ")",
       "there is no tokenizer.json"});
  fs::remove(tmp.path / "vocab.json");  // the FIFO is named, not the absent vocab.json
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); },
                                           merges.string() + ": is a FIFO (named pipe), not a regular file");
  write_file(tmp.path / "vocab.json", byte_vocab().dump());
  fs::create_directory(tmp.path / "tokenizer.json");
  expect_error_containing<kq::FormatError>([&] { Tokenizer::load(tmp.path); },
                                           "are not both there either (" + merges.string() +
                                               ": is a FIFO (named pipe), not a regular file)");
}

// Fresh-user finding (round 12): a post_processor that adds special tokens
// (TemplateProcessing with BOS before the text), tokenizer_config.json's
// "add_bos_token": true, a "truncation" setting and a decoder that is not
// ByteLevel were silently ignored, where Hugging Face applies them. Each is a
// warning naming the file and what is ignored; the tokens are unchanged.
// More settings transformers would apply and kq does not (fresh-user round 13b): add_bos_token given as
// "true" or 1 (Python truthiness), add_prefix_space in tokenizer_config.json, a post_processor that is not an
// object, and added_tokens.json next to vocab.json + merges.txt.
TEST(TokenizerErrors, MoreIgnoredTokenizerSettingsAreWarned) {
  kq::testing::TempDir tmp;
  json j = tokenizer_json();
  j["post_processor"] = "TemplateProcessing";
  write_file(tmp.path / "tokenizer.json", j.dump());
  write_file(tmp.path / "tokenizer_config.json",
        json{{"bos_token", "<|endoftext|>"}, {"add_bos_token", "true"}, {"add_eos_token", 1},
             {"add_prefix_space", true}}
            .dump());
  std::vector<std::string> warnings;
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{256, 'c'}));  // nothing added
  const std::string tj = (tmp.path / "tokenizer.json").string(), cfg = (tmp.path / "tokenizer_config.json").string();
  ASSERT_EQ(warnings.size(), 4u);
  EXPECT_EQ(warnings[0], tj + ": the post_processor \"TemplateProcessing\" is not an object and is ignored (Hugging "
                              "Face would refuse it)");
  // The tokens added around the text are warned about once the tokenizer is built (they resolve).
  EXPECT_EQ(warnings[2].rfind(cfg + ": \"add_bos_token\": \"true\": Hugging Face adds the BOS token", 0), 0u)
      << warnings[2];
  EXPECT_EQ(warnings[3].rfind(cfg + ": \"add_eos_token\": 1: Hugging Face adds the EOS token", 0), 0u)
      << warnings[3];
  EXPECT_EQ(t.prompt_prefix(), (std::vector<int32_t>{257}));  // for kq generate
  EXPECT_EQ(t.prompt_suffix(), (std::vector<int32_t>{257}));
  EXPECT_EQ(warnings[1].rfind(cfg + ": \"add_prefix_space\": true is ignored: Hugging Face's GPT-2 tokenizer puts a "
                                    "space before the text",
                              0),
            0u)
      << warnings[1];
  // The GPT-2 file pair with an added_tokens.json, which kq does not read.
  kq::testing::TempDir g;
  write_file(g.path / "vocab.json", byte_vocab().dump());
  write_file(g.path / "merges.txt", "#version: 0.2\na b\n");
  write_file(g.path / "added_tokens.json", json{{"<|extra|>", 258}}.dump());
  warnings.clear();
  (void)load_collecting_warnings(g.path, warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind((g.path / "added_tokens.json").string() + ": ignored: kq takes added tokens from", 0),
            0u)
      << warnings[0];
}

// Added tokens with "lstrip", "rstrip" or "single_word" true (fresh-user round
// 14b): Hugging Face strips the spaces beside such a token or matches it only
// as a whole word; kq matched the content and kept the spaces without a word.
// One warning names the file and the tokens; in tokenizer_config.json's
// added_tokens_decoder (the vocab.json + merges.txt route) too. "normalized"
// true on a special token is ignored without a normalizer (GPT-2 has it).
TEST(TokenizerErrors, AddedTokenStripAndSingleWordAreWarned) {
  kq::testing::TempDir tmp;
  json j = tokenizer_json();
  j["added_tokens"][0]["lstrip"] = true;
  j["added_tokens"][0]["rstrip"] = true;
  j["added_tokens"][0]["normalized"] = true;
  j["model"]["vocab"]["<|x|>"] = 258;
  j["added_tokens"].push_back(json{{"id", 258}, {"content", "<|x|>"}, {"single_word", true}, {"lstrip", false},
                                   {"special", false}});
  write_file(tmp.path / "tokenizer.json", j.dump());
  std::vector<std::string> warnings;
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  EXPECT_EQ(t.encode("a <|endoftext|> b", {.allow_special = true}),
            (std::vector<int32_t>{'a', ' ', 257, ' ', 'b'}));  // the spaces are kept
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind((tmp.path / "tokenizer.json").string() + ": added token settings are ignored: "
                                  "'<|endoftext|>' (lstrip, rstrip), '<|x|>' (single_word). Hugging Face strips the "
                                  "spaces before (lstrip) or after (rstrip) such a token",
                              0),
            0u)
      << warnings[0];
  kq::testing::TempDir g;
  write_file(g.path / "vocab.json", byte_vocab().dump());
  write_file(g.path / "merges.txt", "#version: 0.2\na b\n");
  write_file(g.path / "tokenizer_config.json",
             json{{"added_tokens_decoder",
                   {{"257", {{"content", "<|endoftext|>"}, {"rstrip", true}, {"special", true}}}}}}
                 .dump());
  warnings.clear();
  (void)load_collecting_warnings(g.path, warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind((g.path / "tokenizer_config.json").string() + ": added token settings are ignored: "
                                  "'<|endoftext|>' (rstrip).",
                              0),
            0u)
      << warnings[0];
}

TEST(TokenizerErrors, IgnoredTokenizerFeaturesAreWarned) {
  kq::testing::TempDir tmp;
  json j = tokenizer_json();
  j["post_processor"] = json::parse(R"({"type": "Sequence", "processors": [
      {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
       "pair": [], "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [257],
                                                        "tokens": ["<|endoftext|>"]}}}]})");
  j["truncation"] = json::parse(R"({"direction": "Right", "max_length": 512, "strategy": "LongestFirst"})");
  j["decoder"] = json::parse(R"({"type": "Metaspace", "replacement": "_"})");
  write_file(tmp.path / "tokenizer.json", j.dump());
  // add_eos_token (not add_bos_token: it would replace the template's BOS, and the post_processor's warning with it)
  write_file(tmp.path / "tokenizer_config.json", json{{"eos_token", "<|endoftext|>"}, {"add_eos_token", true}}.dump());
  std::vector<std::string> warnings;
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{256, 'c'}));  // nothing added
  const std::string tj = (tmp.path / "tokenizer.json").string(), cfg = (tmp.path / "tokenizer_config.json").string();
  ASSERT_EQ(warnings.size(), 4u);
  EXPECT_NE(warnings[0].find(tj + ": \"truncation\" ("), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("is ignored: kq never truncates a text"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find(tj + ": the decoder {\"replacement\":\"_\",\"type\":\"Metaspace\"} is ignored"),
            std::string::npos)
      << warnings[1];
  EXPECT_EQ(warnings[2], cfg + ": \"add_eos_token\": true: Hugging Face adds the EOS token '<|endoftext|>' to every "
                               "encoded text; kq adds none: `kq eval` and `kq bench` score the text's ids alone");
  // The post_processor's tokens are warned about once tokenizer_config.json is read (what it leaves of them).
  EXPECT_EQ(warnings[3], tj + ": the post_processor (Sequence) adds special tokens to every encoded text "
                              "('<|endoftext|>' before it), as Hugging Face tokenizers apply it; kq adds none: "
                              "`kq eval` and `kq bench` score the text's ids alone");
  // The usual GPT-2 files (a ByteLevel post_processor and decoder, no truncation, no add_bos_token): no warning.
  j = tokenizer_json();
  j["post_processor"] = json::parse(R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false})");
  j["decoder"] = json::parse(R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true})");
  j["truncation"] = nullptr;
  write_file(tmp.path / "tokenizer.json", j.dump());
  write_file(tmp.path / "tokenizer_config.json", json{{"bos_token", "<|endoftext|>"}, {"add_bos_token", false}}.dump());
  warnings.clear();
  (void)load_collecting_warnings(tmp.path, warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
}

// An added token's "special", "normalized", "lstrip", "rstrip" or
// "single_word" that is not a boolean (tester round 18, finding 8): kq took
// "special": "false" as special and "normalized": 1 as true, without a word;
// Hugging Face refuses the file ("invalid type: string \"false\", expected a
// boolean"). Now a FormatError naming the file and the field, in
// tokenizer.json's added_tokens and tokenizer_config.json's added_tokens_decoder.
TEST(TokenizerErrors, AddedTokenFlagsThatAreNoBooleansAreRefused) {
  kq::testing::TempDir tmp;
  const fs::path f = tmp.path / "tokenizer.json";
  for (const char* key : {"special", "normalized", "lstrip", "rstrip", "single_word"})
    for (const json& value : {json("false"), json(1), json(nullptr)}) {
      json j = tokenizer_json();
      j["model"]["vocab"]["<tool>"] = 258;
      j["added_tokens"].push_back(json{{"id", 258}, {"content", "<tool>"}, {"special", false}});
      j["added_tokens"][1][key] = value;
      write_file(f, j.dump());
      expect_error_containing<kq::FormatError>(
          [&] { Tokenizer::load(tmp.path); },
          f.string() + ": added_tokens[1]." + key + " must be true or false, not " + value.dump());
    }
  kq::testing::TempDir g;
  write_file(g.path / "vocab.json", byte_vocab().dump());
  write_file(g.path / "merges.txt", "#version: 0.2\na b\n");
  write_file(g.path / "tokenizer_config.json",
             json{{"added_tokens_decoder", {{"257", {{"content", "<|endoftext|>"}, {"special", "false"}}}}}}.dump());
  expect_error_containing<kq::FormatError>(
      [&] { Tokenizer::load(g.path); },
      (g.path / "tokenizer_config.json").string() + ": added_tokens_decoder['257'].special must be true or false");
}

// An added token whose content the vocabulary (or an earlier added token)
// gives another id (tester round 18, finding 7): kq refused the tokenizer
// ("added token 'ab' has id 258 but the vocabulary gives it id 256"); Hugging
// Face's tokenizers loads it with the vocabulary's id and a warning ("Token
// 'ab' was expected to have ID '258' but was given ID '256'"). Now the same,
// the warning naming the file, the token and both ids; the id given up is
// left out (no unassigned id past the vocabulary).
TEST(TokenizerErrors, AddedTokenOfAVocabularyTokenUnderAnotherIdTakesTheVocabularysId) {
  kq::testing::TempDir tmp;
  const fs::path f = tmp.path / "tokenizer.json";
  json j = tokenizer_json();
  j["added_tokens"].push_back(json{{"id", 258}, {"content", "ab"}, {"special", false}});
  j["added_tokens"].push_back(json{{"id", 259}, {"content", "<|endoftext|>"}, {"special", true}});  // listed twice
  write_file(f, j.dump());
  std::vector<std::string> warnings;
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0], f.string() + ": added token 'ab' has id 258, but 'ab' already has id 256 (in the vocabulary "
                                      "or as an earlier added token); kq uses id 256 for it, as Hugging Face does");
  EXPECT_EQ(warnings[1].rfind(f.string() + ": added token '<|endoftext|>' has id 259, but '<|endoftext|>' already "
                                           "has id 257",
                              0),
            0u)
      << warnings[1];
  EXPECT_EQ(t.vocab_size(), 258);
  EXPECT_EQ(t.encode("xaby"), (std::vector<int32_t>{'x', 256, 'y'}));  // matched as an added token, not special
  EXPECT_EQ(t.encode("<|endoftext|>", {.allow_special = true}), (std::vector<int32_t>{257}));
}

// Tokenizer::prompt_prefix() / prompt_suffix(): the special tokens Hugging
// Face adds before / after every single encoded text (Llama-2's "<s>",
// Llama-3's "<|begin_of_text|>"), from tokenizer.json's post_processor and
// tokenizer_config.json's add_bos_token / add_eos_token. encode() adds none.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/tokenizer_test_util.hpp"

using kq::Tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

using kq::testing::load_collecting_warnings;
using kq::testing::write_file;

namespace {

using Ids = std::vector<int32_t>;

/// A byte-level BPE tokenizer.json with the added tokens "<s>" (258) and
/// "</s>" (259) and the given post_processor.
json tokenizer_json(const json& post_processor) {
  json v = json::object();
  for (int b = 0; b < 256; ++b) v[kq::tok::bytes_to_symbols(std::string(1, char(b)))] = b;
  v["ab"] = 256;
  v["<|endoftext|>"] = 257;
  json added = json::array();
  for (const auto& [content, id] : {std::pair{"<|endoftext|>", 257}, {"<s>", 258}, {"</s>", 259}})
    added.push_back(json{{"id", id}, {"content", content}, {"special", true}});
  return json{{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"post_processor", post_processor},
              {"model", json{{"type", "BPE"}, {"vocab", v}, {"merges", json::array({"a b"})}}}};
}

/// TemplateProcessing whose "single" template is `before` tokens, $A, `after` tokens (Llama's layout), each in its
/// special_tokens with the id tokenizer_json() gives it ("<|endoftext|>" 257, "<s>" 258, "</s>" 259; 300, no
/// token's, for another).
json template_processing(const std::vector<std::string>& before, const std::vector<std::string>& after) {
  json single = json::array(), special = json::object();
  const auto add = [&](const std::string& t) {
    single.push_back(json{{"SpecialToken", {{"id", t}, {"type_id", 0}}}});
    const int id = t == "<|endoftext|>" ? 257 : t == "<s>" ? 258 : t == "</s>" ? 259 : 300;
    special[t] = json{{"id", t}, {"ids", {id}}, {"tokens", {t}}};
  };
  for (const std::string& t : before) add(t);
  single.push_back(json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  for (const std::string& t : after) add(t);
  return json{{"type", "TemplateProcessing"}, {"single", single}, {"pair", json::array()}, {"special_tokens", special}};
}

Tokenizer load(const fs::path& dir, const json& post_processor, const json* config,
               std::vector<std::string>& warnings) {
  write_file(dir / "tokenizer.json", tokenizer_json(post_processor).dump());
  if (config) write_file(dir / "tokenizer_config.json", config->dump());
  return load_collecting_warnings(dir, warnings);
}

/// Whether `warning` is tokenizer.json's (in `dir`) post_processor warning naming exactly `tokens`, e.g.
/// "('</s>' after it)".
bool is_post_processor_warning(const std::string& warning, const fs::path& dir, const std::string& tokens) {
  return warning.rfind((dir / "tokenizer.json").string() +
                           ": the post_processor (TemplateProcessing) adds special tokens to every encoded text (" +
                           tokens + "), as Hugging Face tokenizers apply it; ",
                       0) == 0;
}

}  // namespace

TEST(TokenizerPromptPrefix, FromTemplateProcessing) {
  kq::testing::TempDir tmp;
  std::vector<std::string> warnings;
  const Tokenizer t = load(tmp.path, template_processing({"<s>"}, {}), nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), (Ids{258}));
  EXPECT_EQ(t.prompt_suffix(), Ids{});
  EXPECT_EQ(t.encode("abc"), (Ids{256, 'c'}));  // encode() adds nothing
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("; kq adds none: `kq eval` and `kq bench` score the text's ids alone"), std::string::npos)
      << warnings[0];

  kq::testing::TempDir tmp2;
  warnings.clear();
  const Tokenizer both = load(tmp2.path, template_processing({"<s>", "<|endoftext|>"}, {"</s>"}), nullptr, warnings);
  EXPECT_EQ(both.prompt_prefix(), (Ids{258, 257}));
  EXPECT_EQ(both.prompt_suffix(), (Ids{259}));
}

TEST(TokenizerPromptPrefix, FromASequencePostProcessor) {
  kq::testing::TempDir tmp;
  std::vector<std::string> warnings;
  const json seq{{"type", "Sequence"},
                 {"processors", json::array({json{{"type", "ByteLevel"}, {"add_prefix_space", true},
                                                  {"trim_offsets", false}, {"use_regex", true}},
                                             template_processing({"<s>"}, {"</s>"})})}};
  const Tokenizer t = load(tmp.path, seq, nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), (Ids{258}));
  EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
}

// tokenizer_config.json's add_bos_token / add_eos_token, when given, replace the part before / after the text
// (as transformers' slow tokenizers and LlamaTokenizerFast apply them).
TEST(TokenizerPromptPrefix, FromAddBosToken) {
  const json byte_level{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}};
  std::vector<std::string> warnings;
  {
    kq::testing::TempDir tmp;
    const json cfg{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_bos_token", true}, {"add_eos_token", false}};
    const Tokenizer t = load(tmp.path, byte_level, &cfg, warnings);
    EXPECT_EQ(t.prompt_prefix(), (Ids{258}));
    EXPECT_EQ(t.prompt_suffix(), Ids{});
  }
  {  // false replaces the template's BOS; an absent add_eos_token keeps its EOS
    kq::testing::TempDir tmp;
    const json cfg{{"bos_token", "<s>"}, {"add_bos_token", false}};
    const Tokenizer t = load(tmp.path, template_processing({"<s>"}, {"</s>"}), &cfg, warnings);
    EXPECT_EQ(t.prompt_prefix(), Ids{});
    EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
  }
  {  // no bos_token named: "<|endoftext|>", as GPT2Tokenizer's default
    kq::testing::TempDir tmp;
    const json cfg{{"add_bos_token", 1}};
    const Tokenizer t = load(tmp.path, byte_level, &cfg, warnings);
    EXPECT_EQ(t.prompt_prefix(), (Ids{257}));
  }
}

// "bos_token": null with "add_bos_token": true names no token: kq put the default "<|endoftext|>" before the text
// (and warned that Hugging Face adds it), where transformers refuses the pair at load ("add_bos_token = True but
// bos_token = None"). A FormatError naming the file and both keys; the same for add_eos_token / eos_token.
TEST(TokenizerPromptPrefix, AddTokenTrueWithANullTokenIsAnError) {
  const json byte_level{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}};
  std::vector<std::string> warnings;
  for (const auto& [add, token] : {std::pair{"add_bos_token", "bos_token"}, {"add_eos_token", "eos_token"}}) {
    kq::testing::TempDir tmp;
    const json cfg{{token, nullptr}, {add, true}};
    try {
      (void)load(tmp.path, byte_level, &cfg, warnings);
      ADD_FAILURE() << add << ": loaded";
    } catch (const kq::FormatError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find((tmp.path / "tokenizer_config.json").string()), std::string::npos) << m;
      EXPECT_NE(m.find(std::string("\"") + add + "\": true but \"" + token + "\" is null"), std::string::npos) << m;
    }
  }
  {  // null with add_bos_token false adds nothing: fine
    kq::testing::TempDir tmp;
    const json cfg{{"bos_token", nullptr}, {"add_bos_token", false}};
    EXPECT_EQ(load(tmp.path, byte_level, &cfg, warnings).prompt_prefix(), Ids{});
  }
}

// The post_processor's warning names only the tokens tokenizer_config.json's add_bos_token / add_eos_token leave
// of it (it warned about a BOS that "add_bos_token": false had removed).
TEST(TokenizerPromptPrefix, PostProcessorWarningOnlyForTokensThatApply) {
  std::vector<std::string> warnings;
  {  // false removes the only token: no warning
    kq::testing::TempDir tmp;
    const json cfg{{"bos_token", "<s>"}, {"add_bos_token", false}};
    const Tokenizer t = load(tmp.path, template_processing({"<s>"}, {}), &cfg, warnings);
    EXPECT_EQ(t.prompt_prefix(), Ids{});
    EXPECT_TRUE(warnings.empty()) << warnings.front();
  }
  {  // false removes the BOS; the EOS after the text is left
    kq::testing::TempDir tmp;
    warnings.clear();
    const json cfg{{"bos_token", "<s>"}, {"add_bos_token", false}};
    const Tokenizer t = load(tmp.path, template_processing({"<s>"}, {"</s>"}), &cfg, warnings);
    EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_TRUE(is_post_processor_warning(warnings[0], tmp.path, "'</s>' after it")) << warnings[0];
  }
  {  // true replaces the template's BOS with bos_token: only tokenizer_config.json's warning
    kq::testing::TempDir tmp;
    warnings.clear();
    const json cfg{{"bos_token", "<|endoftext|>"}, {"add_bos_token", true}};
    const Tokenizer t = load(tmp.path, template_processing({"<s>"}, {}), &cfg, warnings);
    EXPECT_EQ(t.prompt_prefix(), (Ids{257}));
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_EQ(warnings[0].rfind((tmp.path / "tokenizer_config.json").string() + ": \"add_bos_token\": true: ", 0), 0u)
        << warnings[0];
  }
}

// Tester finding: a special_tokens entry with "ids": [] adds nothing (Hugging Face, kq), yet the warning said the
// post_processor adds it ("('<|endoftext|>' before it)"). The warning names only the tokens that add ids.
TEST(TokenizerPromptPrefix, PostProcessorWarningSkipsTokensWithNoIds) {
  std::vector<std::string> warnings;
  {  // the only token adds no id: no warning
    kq::testing::TempDir tmp;
    json pp = template_processing({"<|endoftext|>"}, {});
    pp["special_tokens"]["<|endoftext|>"]["ids"] = json::array();
    const Tokenizer t = load(tmp.path, pp, nullptr, warnings);
    EXPECT_EQ(t.prompt_prefix(), Ids{});
    EXPECT_TRUE(warnings.empty()) << warnings.front();
  }
  {  // "<|endoftext|>" before the text adds no id, "</s>" after it does: only "</s>" is named
    kq::testing::TempDir tmp;
    warnings.clear();
    json pp = template_processing({"<|endoftext|>"}, {"</s>"});
    pp["special_tokens"]["<|endoftext|>"]["ids"] = json::array();
    const Tokenizer t = load(tmp.path, pp, nullptr, warnings);
    EXPECT_EQ(t.prompt_prefix(), Ids{});
    EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_TRUE(is_post_processor_warning(warnings[0], tmp.path, "'</s>' after it")) << warnings[0];
  }
}

// Tester round 18, finding 6: `kq generate` puts the prefix before its prompt as Hugging Face does, yet every run
// warned about it. LoadOptions::puts_prompt_prefix leaves the tokens before the text out of the warnings; those
// after it (which generate does not add) are still named, in one line per file.
TEST(TokenizerPromptPrefix, PutsPromptPrefixLeavesTheWarningAboutItOut) {
  std::vector<std::string> warnings;
  const kq::LoadOptions generate{.puts_prompt_prefix = true};
  {
    kq::testing::TempDir tmp;
    (void)load(tmp.path, template_processing({"<s>"}, {}), nullptr, warnings);
    ASSERT_EQ(warnings.size(), 1u);
    warnings.clear();
    const Tokenizer t = load_collecting_warnings(tmp.path, warnings, generate);
    EXPECT_EQ(t.prompt_prefix(), (Ids{258}));
    EXPECT_TRUE(warnings.empty()) << warnings.front();
  }
  {
    kq::testing::TempDir tmp;
    warnings.clear();
    (void)load(tmp.path, template_processing({"<s>"}, {"</s>"}), nullptr, warnings);
    warnings.clear();
    (void)load_collecting_warnings(tmp.path, warnings, generate);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_EQ(warnings[0], (tmp.path / "tokenizer.json").string() +
                               ": the post_processor (TemplateProcessing) adds special tokens to every encoded text "
                               "('</s>' after it), as Hugging Face tokenizers apply it; `kq generate` puts none "
                               "after its prompt");
  }
  {
    kq::testing::TempDir tmp;
    warnings.clear();
    const json cfg{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_bos_token", true}, {"add_eos_token", true}};
    (void)load(tmp.path, json(nullptr), &cfg, warnings);
    EXPECT_EQ(warnings.size(), 2u);
    warnings.clear();
    (void)load_collecting_warnings(tmp.path, warnings, generate);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_EQ(warnings[0], (tmp.path / "tokenizer_config.json").string() +
                               ": \"add_eos_token\": true: Hugging Face adds the EOS token '</s>' to every encoded "
                               "text; `kq generate` puts none after its prompt");
  }
}

TEST(TokenizerPromptPrefix, NoneForGpt2) {
  kq::testing::TempDir tmp;
  std::vector<std::string> warnings;
  const json byte_level{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}};
  const json cfg{{"bos_token", "<|endoftext|>"}, {"add_bos_token", false}};
  const Tokenizer t = load(tmp.path, byte_level, &cfg, warnings);
  EXPECT_EQ(t.prompt_prefix(), Ids{});
  EXPECT_EQ(t.prompt_suffix(), Ids{});
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  for (const char* m : {"gpt2-tiny", "llama-small"}) {
    const fs::path dir = kq::testing::shared_dir() / "models" / m;
    if (!fs::exists(dir / "config.json")) continue;
    const Tokenizer s = Tokenizer::load(dir);
    EXPECT_EQ(s.prompt_prefix(), Ids{}) << m;
    EXPECT_EQ(s.prompt_suffix(), Ids{}) << m;
  }
}

// A token the template names with an id the tokenizer does not have: a warning naming the file, and no prefix.
TEST(TokenizerPromptPrefix, UnknownTokenIsWarnedAndNotAdded) {
  kq::testing::TempDir tmp;
  std::vector<std::string> warnings;
  const Tokenizer t = load(tmp.path, template_processing({"<s>", "<bos>"}, {}), nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), Ids{});
  // The post_processor's "adds special tokens" warning is not given: it adds none.
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], (tmp.path / "tokenizer.json").string() +
                             ": the special token '<bos>' to add before the text has id 300 in the post_processor's "
                             "special_tokens, which is not in the vocabulary nor an added token; kq adds none before "
                             "it");
  // A content tokenizer_config.json names that the tokenizer does not have (tester round 18, finding 6): three
  // warnings, the first saying that Hugging Face adds it and `kq generate` puts it before its prompt, the last that
  // kq adds none. Now the one naming bos_token alone.
  kq::testing::TempDir tmp3;
  warnings.clear();
  const json named{{"bos_token", "<bos>"}, {"add_bos_token", true}};
  const Tokenizer n = load(tmp3.path, json(nullptr), &named, warnings);
  EXPECT_EQ(n.prompt_prefix(), Ids{});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], (tmp3.path / "tokenizer_config.json").string() +
                             ": bos_token '<bos>' is not in the vocabulary nor an added token; the tokenizer has no "
                             "bos_token");
}

// TemplateProcessing names its special tokens, and special_tokens gives their ids. A name missing from
// special_tokens was taken by content; Hugging Face's tokenizers cannot encode a text with it ("Missing
// SpecialToken with id"): a FormatError naming the file and the token. So is an entry without "ids" or "tokens"
// (Hugging Face refuses it at load). The "pair" template, never used for a single text, is not checked.
TEST(TokenizerPromptPrefix, TemplateTokenMissingFromSpecialTokensIsAnError) {
  kq::testing::TempDir tmp;
  const std::string tj = (tmp.path / "tokenizer.json").string();
  std::vector<std::string> warnings;
  json pp = template_processing({"<s>"}, {"</s>"});
  pp["special_tokens"].erase("</s>");
  kq::testing::expect_error<kq::FormatError>(
      [&] { (void)load(tmp.path, pp, nullptr, warnings); },
      {tj + ": the post_processor's TemplateProcessing adds the special token '</s>' to every text, but its "
            "\"special_tokens\" has no entry '</s>'",
       "Missing SpecialToken with id"});
  const json seq{{"type", "Sequence"}, {"processors", json::array({pp})}};
  kq::testing::expect_error<kq::FormatError>([&] { (void)load(tmp.path, seq, nullptr, warnings); },
                                             {tj + ": ", "no entry '</s>'"});
  pp.erase("special_tokens");
  kq::testing::expect_error<kq::FormatError>([&] { (void)load(tmp.path, pp, nullptr, warnings); },
                                             {tj + ": ", "no entry '<s>'"});
  pp = template_processing({"<s>"}, {});
  pp["special_tokens"]["<s>"].erase("ids");
  kq::testing::expect_error<kq::FormatError>(
      [&] { (void)load(tmp.path, pp, nullptr, warnings); },
      {tj + ": the post_processor's special_tokens entry '<s>' needs an \"ids\" and a \"tokens\" array"});
  pp = template_processing({"<s>"}, {});
  pp["special_tokens"]["<s>"]["ids"] = json::array({-1});
  kq::testing::expect_error<kq::FormatError>([&] { (void)load(tmp.path, pp, nullptr, warnings); },
                                             {tj + ": the post_processor's special token '<s>' (ids[0]) has id -1"});
  pp = template_processing({"<s>"}, {});
  pp["pair"] = json::array({json{{"SpecialToken", {{"id", "<cls>"}, {"type_id", 0}}}}});
  EXPECT_EQ(load(tmp.path, pp, nullptr, warnings).prompt_prefix(), (Ids{258}));
}

// Hugging Face adds the ids special_tokens gives, whatever the vocabulary gives the token; kq adds the same, and
// warns when they differ.
TEST(TokenizerPromptPrefix, TemplateIdsAreTheOnesAdded) {
  kq::testing::TempDir tmp;
  std::vector<std::string> warnings;
  json pp = template_processing({"<s>"}, {});
  pp["special_tokens"]["<s>"]["ids"] = json::array({259});
  EXPECT_EQ(load(tmp.path, pp, nullptr, warnings).prompt_prefix(), (Ids{259}));
  ASSERT_EQ(warnings.size(), 2u);  // this, then the post_processor's (once the tokens resolved)
  EXPECT_EQ(warnings[0], (tmp.path / "tokenizer.json").string() +
                             ": the special token '<s>' has id 259 in the post_processor's special_tokens, but the "
                             "vocabulary / added tokens give it 258 (id 259 is '</s>'); kq adds id 259 before the "
                             "text, as Hugging Face does");
  // Several ids for one template token, all added; ids that agree with the vocabulary: no warning but the first.
  warnings.clear();
  pp["special_tokens"]["<s>"] = json{{"id", "<s>"}, {"ids", {258, 257}}, {"tokens", {"<s>", "<|endoftext|>"}}};
  EXPECT_EQ(load(tmp.path, pp, nullptr, warnings).prompt_prefix(), (Ids{258, 257}));
  EXPECT_EQ(warnings.size(), 1u);
}

// RobertaProcessing / BertProcessing give cls (before the text) and sep (after it) as [token, id] pairs, and
// Hugging Face adds the ids, whatever the vocabulary gives the token; kq took the tokens by content (a pair whose id
// differed from the vocabulary's gave the vocabulary's id, one whose content was not there added nothing). A pair
// that is missing or not [string, id] is refused at load by Hugging Face: a FormatError naming the file and the key.
TEST(TokenizerPromptPrefix, RobertaAndBertProcessingAddTheirIds) {
  kq::testing::TempDir tmp;
  const std::string tj = (tmp.path / "tokenizer.json").string();
  std::vector<std::string> warnings;
  json roberta{{"type", "RobertaProcessing"}, {"sep", json::array({"</s>", 259})}, {"cls", json::array({"<s>", 258})},
               {"trim_offsets", true}, {"add_prefix_space", false}};
  Tokenizer t = load(tmp.path, roberta, nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), (Ids{258}));
  EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].rfind(tj + ": the post_processor (RobertaProcessing) adds special tokens to every encoded "
                                   "text ('<s>' before it, '</s>' after it)",
                              0),
            0u)
      << warnings[0];
  // The pair's id, not the vocabulary's: warned naming both.
  warnings.clear();
  roberta["cls"] = json::array({"<s>", 257});
  t = load(tmp.path, roberta, nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), (Ids{257}));
  EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0], tj + ": the special token '<s>' has id 257 in the post_processor's \"cls\", but the "
                              "vocabulary / added tokens give it 258 (id 257 is '<|endoftext|>'); kq adds id 257 "
                              "before the text, as Hugging Face does");
  // BertProcessing (also inside a Sequence): a content the vocabulary lacks is still added by its id.
  warnings.clear();
  const json bert{
      {"type", "BertProcessing"}, {"sep", json::array({"[SEP]", 259})}, {"cls", json::array({"[CLS]", 258})}};
  t = load(tmp.path, json{{"type", "Sequence"}, {"processors", json::array({bert})}}, nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), (Ids{258}));
  EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
  // An id no token has: warned, none added (as for a template's).
  warnings.clear();
  roberta["cls"] = json::array({"<s>", 300});
  t = load(tmp.path, roberta, nullptr, warnings);
  EXPECT_EQ(t.prompt_prefix(), Ids{});
  EXPECT_EQ(t.prompt_suffix(), (Ids{259}));
  ASSERT_EQ(warnings.size(), 2u);  // this, then the post_processor's, which names '</s>' after the text only
  EXPECT_EQ(warnings[1].rfind(tj + ": the post_processor (RobertaProcessing) adds special tokens to every encoded "
                                   "text ('</s>' after it)",
                              0),
            0u)
      << warnings[1];
  EXPECT_EQ(warnings[0], tj + ": the special token '<s>' to add before the text has id 300 in the post_processor's "
                              "\"cls\", which is not in the vocabulary nor an added token; kq adds none before it");
  // Not a [token, id] pair: refused naming the file, the type and the key.
  for (const json& bad : {json::array({"<s>"}), json::array({"<s>", 258, 0}), json::array({258, "<s>"}), json("<s>"),
                         json(nullptr)}) {
    json pp = bert;
    pp["cls"] = bad;
    kq::testing::expect_error<kq::FormatError>(
        [&] { (void)load(tmp.path, pp, nullptr, warnings); },
        {tj + ": the post_processor's BertProcessing needs \"cls\" as a [token, id] pair, got "});
  }
  json pp = roberta;
  pp.erase("sep");
  kq::testing::expect_error<kq::FormatError>(
      [&] { (void)load(tmp.path, pp, nullptr, warnings); },
      {tj + ": the post_processor's RobertaProcessing needs \"sep\" as a [token, id] pair, got none"});
  pp = roberta;
  pp["sep"] = json::array({"</s>", -1});
  kq::testing::expect_error<kq::FormatError>(
      [&] { (void)load(tmp.path, pp, nullptr, warnings); },
      {tj + ": the post_processor's RobertaProcessing \"sep\" token '</s>' has id -1 outside [0, "});
  pp["sep"] = json::array({"</s>", 2.5});
  kq::testing::expect_error<kq::FormatError>([&] { (void)load(tmp.path, pp, nullptr, warnings); },
                                             {tj + ": ", "\"sep\" token '</s>' has a non-integer id 2.5"});
}

// `kq tokenize`: the ids of the shared tokenizer cases (data/tokenizer_cases.json, the test models' tokenizer,
// which the shipped demo model also has), decode(encode(text)) == text through the command line, invalid UTF-8
// encoded as the tokenizer documents (any bytes; decoding gives them back), empty input, and bad input named.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "kq/tokenizer.hpp"

using namespace kq::testing;
namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

namespace {

/// The shared cases: [{"text": ..., "ids": [...]}, ...].
nlohmann::json shared_cases() { return nlohmann::json::parse(read_all(shared_dir() / "data/tokenizer_cases.json")); }

fs::path shared_model() { return shared_dir() / "models/gpt2-tiny"; }

/// `ids` as kq tokenize prints them: separated by one space, then a newline.
std::string id_line(const Ids& ids) { return fmt::format("{}\n", fmt::join(ids, " ")); }

}  // namespace

TEST(CliTokenize, IdsAreThoseOfTheSharedTokenizerCases) {
  KQ_REQUIRE_SHARED("data/tokenizer_cases.json");
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  // The vocabulary strings of the JSON's "tokens" are checked against vocab.json (string -> id).
  const nlohmann::json vocab = nlohmann::json::parse(read_all(shared_model() / "vocab.json"));
  TempDir tmp;
  const nlohmann::json cases = shared_cases();
  ASSERT_GE(cases.size(), 5u);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const Ids want = c.at("ids").get<Ids>();
    const auto r = run_kq({"tokenize", "--model", shared_model().string(), text});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, id_line(want)) << text;
    // The same through --file, with --json (its "tokens" name the same ids) and --tokens (one line each, then the
    // count).
    const fs::path in = write_text(tmp.path / "in.txt", text), json = tmp.path / "out.json";
    const auto f = run_kq({"tokenize", "-m", shared_model().string(), "--file", in.string(), "--json", json.string(),
                           "--tokens"});
    EXPECT_EQ(f.status, 0) << f.err;
    EXPECT_TRUE(f.out.ends_with(fmt::format("\n{} tokens\n", want.size()))) << f.out;
    EXPECT_EQ(count(f.out, "\n"), want.size() + 1) << f.out;
    const nlohmann::json j = nlohmann::json::parse(read_all(json));
    EXPECT_EQ(j.at("ids").get<Ids>(), want) << text;
    ASSERT_EQ(j.at("tokens").size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const std::string token = j["tokens"][i].get<std::string>();
      ASSERT_TRUE(vocab.contains(token)) << token;
      EXPECT_EQ(vocab[token].get<int32_t>(), want[i]) << token;
    }
    // Standard input ('-' and --file -) gives the same ids.
    for (const char* dash : {"-", "--file=-"}) {
      const auto s = run_kq_in(kq::testing::source_dir(), {"tokenize", "-m", shared_model().string(), dash}, 0, in);
      EXPECT_EQ(s.status, 0) << s.err;
      EXPECT_EQ(s.out, id_line(want)) << dash << ": " << text;
    }
  }
  // The default model (no --model) is the shipped demo model, whose tokenizer is the test models'.
  const auto d = run_kq({"tokenize", cases[0].at("text").get<std::string>()});
  EXPECT_EQ(d.status, 0) << d.err;
  EXPECT_EQ(d.out, id_line(cases[0].at("ids").get<Ids>()));
}

TEST(CliTokenize, DecodeOfTheIdsIsTheText) {
  KQ_REQUIRE_SHARED("data/tokenizer_cases.json");
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  TempDir tmp;
  for (const auto& c : shared_cases()) {
    const std::string text = c.at("text").get<std::string>();
    const Ids ids = c.at("ids").get<Ids>();
    // The ids as separate arguments: the text, then a newline.
    std::vector<std::string> args{"tokenize", "-m", shared_model().string(), "--decode"};
    for (const int32_t id : ids) args.push_back(std::to_string(id));
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, text + "\n");
    // decode(encode(text)): the JSON ids of the encoding, written as Python prints a list, read back from a file.
    const fs::path in = write_text(tmp.path / "in.txt", text), json = tmp.path / "ids.json";
    ASSERT_EQ(run_kq({"tokenize", "-m", shared_model().string(), "-f", in.string(), "--json", json.string()}).status,
              0);
    const Ids encoded = nlohmann::json::parse(read_all(json)).at("ids").get<Ids>();
    const fs::path list = write_text(tmp.path / "ids.txt", fmt::format("[{}]\n", fmt::join(encoded, ", ")));
    const auto back = run_kq({"tokenize", "-m", shared_model().string(), "--decode", "--file", list.string()});
    EXPECT_EQ(back.status, 0) << back.err;
    EXPECT_EQ(back.out, text + "\n");
  }
}

// Invalid UTF-8 is encoded as the tokenizer documents (any bytes: each ill-formed run a pre-token of its own,
// from its single bytes), with a warning naming the first bad byte; decoding the ids gives the bytes back, and
// --tokens shows them escaped (standard output stays valid UTF-8).
TEST(CliTokenize, InvalidUtf8IsEncodedAsTheTokenizerDoesAndDecodesBack) {
  TempDir tmp;
  const std::string bytes = std::string("ok \xff\xfe then \xc3(") + " caf\xc3\xa9";  // 0xFF 0xFE, a cut "Ã"
  const fs::path in = write_text(tmp.path / "latin.txt", bytes), json = tmp.path / "ids.json";
  const auto r = run_kq({"tokenize", "--file", in.string(), "--json", json.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, std::string("kq: warning: --file '") + in.string() + "' is not valid UTF-8 (byte offset 3)"))
      << r.err;
  const Ids ids = nlohmann::json::parse(read_all(json)).at("ids").get<Ids>();
  EXPECT_EQ(ids, kq::Tokenizer::load(demo_model()).encode(bytes));  // the library's ids for the same bytes
  EXPECT_EQ(r.out, id_line(ids));
  std::vector<std::string> args{"tokenize", "--decode"};
  for (const int32_t id : ids) args.push_back(std::to_string(id));
  EXPECT_EQ(run_kq(args).out, bytes + "\n");
  const auto t = run_kq({"tokenize", "--tokens", "--file", in.string()});
  EXPECT_EQ(t.status, 0) << t.err;
  EXPECT_TRUE(has(t.out, "\"\\xFF")) << t.out;
  EXPECT_FALSE(has(t.out, "\xff")) << t.out;
  EXPECT_TRUE(has(t.out, fmt::format("{} tokens\n", ids.size()))) << t.out;
}

TEST(CliTokenize, EmptyInputHasNoTokens) {
  TempDir tmp;
  const fs::path empty = write_text(tmp.path / "empty.txt", ""), json = tmp.path / "e.json";
  for (const std::vector<std::string>& input : {std::vector<std::string>{""}, {"-"}, {"--file", empty.string()}}) {
    std::vector<std::string> args{"tokenize", "--json", json.string()};
    args.insert(args.end(), input.begin(), input.end());
    const auto r = run_kq(args);  // (standard input is /dev/null)
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "\n");
    EXPECT_EQ(nlohmann::json::parse(read_all(json)), nlohmann::json::parse(R"({"ids": [], "tokens": []})"));
  }
  EXPECT_EQ(run_kq({"tokenize", "--tokens", ""}).out, "0 tokens\n");
  EXPECT_EQ(run_kq({"tokenize", "--decode", ""}).out, "\n");
  // --json -: the JSON alone on standard output.
  const auto j = run_kq({"tokenize", "--json", "-", "Hello world"});
  EXPECT_EQ(j.status, 0) << j.err;
  EXPECT_EQ(nlohmann::json::parse(j.out).at("ids").size(),
            kq::Tokenizer::load(demo_model()).encode("Hello world").size());
}

TEST(CliTokenize, BadInputIsNamed) {
  TempDir tmp;
  const fs::path missing = tmp.path / "missing.txt";
  auto r = run_kq({"tokenize", "--file", missing.string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, std::string("kq: error: --file: '") + missing.string() + "' not found")) << r.err;
  r = run_kq({"tokenize", "--file", tmp.path.string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, std::string("'") + tmp.path.string() + "' is a directory")) << r.err;
  const int32_t vocab = kq::Tokenizer::load(demo_model()).vocab_size();
  for (const std::string& id : {std::to_string(vocab), std::string("-1"), std::string("99999999999999999999")}) {
    r = run_kq({"tokenize", "--decode", "40", id});
    EXPECT_EQ(r.status, 1) << id;
    EXPECT_TRUE(has(r.err, fmt::format("token id {} is out of range: the tokenizer of the default model", id)))
        << r.err;
    EXPECT_TRUE(has(r.err, fmt::format("has {} tokens (ids 0 to {})", vocab, vocab - 1))) << r.err;
    EXPECT_EQ(r.out, "");
  }
  r = run_kq({"tokenize", "--decode", "40", "4o"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--decode: '4o' is not a token id")) << r.err;
  // Usage errors (exit status 2): no input, both inputs, a text in several arguments.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"tokenize"},
                                               {"tokenize", "x", "--file", missing.string()},
                                               {"tokenize", "Hello", "world"}}) {
    r = run_kq(args);
    EXPECT_EQ(r.status, 2) << r.err;
  }
  EXPECT_TRUE(has(run_kq({"tokenize", "Hello", "world"}).err, "quote a text with spaces"));
  // A model folder without a tokenizer is named.
  r = run_kq({"tokenize", "--model", tmp.path.string(), "x"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, tmp.path.string())) << r.err;
}

// Tester 24 (F6): one rule for --decode's ids: integers separated by white space and/or one comma each,
// optionally in one [ ]; "[1,,2]", ",1" and "[[1]]" were accepted, and "[1,2," named '[1' instead of the
// missing ']'.
TEST(CliTokenize, DecodeIdListsFollowOneRule) {
  const auto want = run_kq({"tokenize", "--decode", "40 5677 3017"});
  ASSERT_EQ(want.status, 0) << want.err;
  for (const std::string list : {"40,5677,3017", "[40, 5677, 3017]", " [40 ,5677,\n3017] ", "40, 5677 3017"}) {
    const auto r = run_kq({"tokenize", "--decode", list});
    EXPECT_EQ(r.status, 0) << list << ": " << r.err;
    EXPECT_EQ(r.out, want.out) << list;
  }
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"[1,2,", "the list opened by '[' at byte 0 has no closing ']' at its end"},
      {"1,2]", "the ']' at byte 3 closes no '['"},
      {"[1,,2]", "empty element: the ',' at byte 3 has no id before it"},
      {",1", "empty element: the ',' at byte 0 has no id before it"},
      {"[1,2,]", "empty element: the ',' at byte 4 has no id after it"},
      {"1 2 ,", "empty element: the ',' at byte 4 has no id after it"},
      {"[[1]]", "'[' at byte 1 is inside the list: nested lists are not token ids"},
      {"[1, [2]]", "'[' at byte 4 is inside the list"},
  };
  // Through --file the same rule (one argument is taken as given too: BracketedArgumentIsTakenAsGiven).
  TempDir tmp;
  for (const std::string list : {"[40,5677,\n3017]\n", "40 5677 3017\n", " 40,\t5677 , 3017"}) {
    const fs::path in = write_text(tmp.path / "ids.txt", list);
    EXPECT_EQ(run_kq({"tokenize", "--decode", "--file", in.string()}).out, want.out) << list;
  }
  EXPECT_EQ(run_kq({"tokenize", "--decode", "--file", write_text(tmp.path / "e.txt", "[ ]\n").string()}).out, "\n");
  for (const auto& [list, message] : refused) {
    const fs::path in = write_text(tmp.path / "ids.txt", list);
    const auto r = run_kq({"tokenize", "--decode", "--file", in.string()});
    EXPECT_EQ(r.status, 1) << list;
    EXPECT_TRUE(has(r.err, "kq: error: --decode: " + message)) << list << ": " << r.err;
    EXPECT_EQ(r.out, "") << list;
    const auto a = run_kq({"tokenize", "--decode", list});  // the same as one argument
    EXPECT_EQ(a.status, 1) << list;
    EXPECT_TRUE(has(a.err, "kq: error: --decode: " + message)) << list << ": " << a.err;
  }
}

// Tester 24 (F7): --no-newline prints the decoded text's bytes alone, so that they encode to the same ids again.
TEST(CliTokenize, NoNewlinePrintsTheDecodedBytesExactly) {
  const std::string text = "First line,\nsecond line ?\n";
  const Ids ids = kq::Tokenizer::load(demo_model()).encode(text);
  std::vector<std::string> args{"tokenize", "--decode", "--no-newline"};
  for (const int32_t id : ids) args.push_back(std::to_string(id));
  const auto r = run_kq(args);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, text);
  TempDir tmp;
  const fs::path back = write_text(tmp.path / "back.txt", r.out);
  EXPECT_EQ(run_kq({"tokenize", "--file", back.string()}).out, id_line(ids));
  args.erase(args.begin() + 2);  // without the flag: the text, then a newline
  EXPECT_EQ(run_kq(args).out, text + "\n");
  const auto usage = run_kq({"tokenize", "--no-newline", "Hello"});
  EXPECT_EQ(usage.status, 2);
  EXPECT_TRUE(has(usage.err, "--no-newline goes with --decode")) << usage.err;
}

// Tester 25 (F8): a UTF-8 byte-order mark before the ids (a file saved by a Windows editor) was blamed on a ']'
// ("closes no '['"), and kq tokenize's own --json output was refused as "nested lists". The mark is skipped, and
// a JSON object gives its "ids" list, so --json's output decodes back to the text.
TEST(CliTokenize, DecodeSkipsAByteOrderMarkAndReadsItsOwnJson) {
  TempDir tmp;
  const auto want = run_kq({"tokenize", "--decode", "40 5677"});
  ASSERT_EQ(want.status, 0) << want.err;
  for (const std::string list : {"\xEF\xBB\xBF[40, 5677]\r\n", "\xEF\xBB\xBF" "40 5677", "\xEF\xBB\xBF {\"ids\": [40, 5677]}"}) {
    const auto r = run_kq({"tokenize", "--decode", "--file", write_text(tmp.path / "bom.txt", list).string()});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, want.out);
  }
  // The round trip through --json: the text, its ids in own.json, decoded back with --no-newline.
  const std::string text = "Hello world, again.";
  const fs::path own = tmp.path / "own.json";
  ASSERT_EQ(run_kq({"tokenize", "--json", own.string(), text}).status, 0);
  const auto back = run_kq({"tokenize", "--decode", "--no-newline", "--file", own.string()});
  EXPECT_EQ(back.status, 0) << back.err;
  EXPECT_EQ(back.out, text);
  const auto piped = run_kq_in(kq::testing::source_dir(), {"tokenize", "--decode", "-"}, 0, own);
  EXPECT_EQ(piped.out, text + "\n") << piped.err;
  // A JSON object that is not one: named, and told what to give.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"{\"tokens\": [\"Hello\"]}", "is a JSON object without an \"ids\" list: give the ids"},
      {"{\"ids\": 40}", "is a JSON object without an \"ids\" list"},
      {"{\"ids\": [40, \"x\"]}", "\"ids\"[1] is \"x\", not a token id"},
      {"{\"ids\": [40, 1.5]}", "\"ids\"[1] is 1.5, not a token id"},
      {"{\"ids\": [40, -1]}", "token id -1 is out of range"},
      {"{\"ids\": [18446744073709551615]}", "token id 18446744073709551615 is out of range"},
      {"{\"ids\": [40]", "the input starts with '{' but is not valid JSON"},
  };
  for (const auto& [json, message] : refused) {
    const fs::path in = write_text(tmp.path / "bad.json", json);
    const auto r = run_kq({"tokenize", "--decode", "--file", in.string()});
    EXPECT_EQ(r.status, 1) << json;
    EXPECT_TRUE(has(r.err, "kq: error: --decode: ")) << json << ": " << r.err;
    EXPECT_TRUE(has(r.err, message)) << json << ": " << r.err;
    EXPECT_EQ(r.out, "") << json;
  }
}

// Tester 25 (F3): "[]" as the one TEXT argument was the usage error "no input" (CLI11 took "[...]" as a list of
// its comma-separated items and added none); it is an empty id list, as "[]" through standard input: an empty line.
// A ']' inside a list without brackets was called a nested list.
TEST(CliTokenize, DecodeEmptyBracketsArgumentAndStrayBracket) {
  TempDir tmp;
  const auto arg = run_kq({"tokenize", "--decode", "[]"});
  EXPECT_EQ(arg.status, 0) << arg.err;
  EXPECT_EQ(arg.out, "\n");
  const auto piped = run_kq_in(kq::testing::source_dir(), {"tokenize", "--decode", "-"}, 0, write_text(tmp.path / "e", "[]"));
  EXPECT_EQ(piped.status, 0) << piped.err;
  EXPECT_EQ(piped.out, arg.out);
  EXPECT_EQ(run_kq({"tokenize", "--decode", "--no-newline", "[]"}).out, "");
  EXPECT_EQ(run_kq({"tokenize", "--decode"}).status, 2);  // still no input at all
  const auto enc = run_kq_in(kq::testing::source_dir(), {"tokenize", "-"}, 0, write_text(tmp.path / "b", "[1,2]"));
  EXPECT_EQ(enc.out, id_line(kq::Tokenizer::load(demo_model()).encode("[1,2]"))) << enc.err;
  const auto stray = run_kq({"tokenize", "--decode", "1 ] 2"});
  EXPECT_EQ(stray.status, 1);
  EXPECT_TRUE(has(stray.err, "kq: error: --decode: ']' at byte 2 is inside the list: brackets go only around the "
                             "whole list"))
      << stray.err;
  EXPECT_FALSE(has(stray.err, "nested")) << stray.err;
}

// Stop 26's Left: CLI11 reads an argument "[...]" given to a list option as its comma-separated items (empty ones
// dropped), so the TEXT "[x]" was tokenized as "x", "[1,2]" was refused as two arguments, and --decode took
// "[1,,2]" and "[[1]]" as one argument. The first argument is now taken as given.
TEST(CliTokenize, BracketedArgumentIsTakenAsGiven) {
  const kq::Tokenizer tok = kq::Tokenizer::load(demo_model());
  for (const std::string text : {"[x]", "[]", "[1,2]", "[a,,b]", "[[1]]"}) {
    const auto r = run_kq({"tokenize", text});
    EXPECT_EQ(r.status, 0) << text << ": " << r.err;
    EXPECT_EQ(r.out, id_line(tok.encode(text))) << text;
  }
  const auto two = run_kq({"tokenize", "a", "[b]"});
  EXPECT_EQ(two.status, 2);
  EXPECT_TRUE(has(two.err, "TEXT: 2 arguments given")) << two.err;
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"[1,,2]", "empty element: the ',' at byte 3 has no id before it"},
      {"[[1]]", "'[' at byte 1 is inside the list: nested lists are not token ids"},
  };
  for (const auto& [list, message] : refused) {
    const auto r = run_kq({"tokenize", "--decode", list});
    EXPECT_EQ(r.status, 1) << list;
    EXPECT_TRUE(has(r.err, message)) << list << ": " << r.err;
  }
  // Several id arguments still work, the first in [ ] too.
  const auto want = run_kq({"tokenize", "--decode", "40 5677 3017"});
  for (const std::vector<std::string>& args : {std::vector<std::string>{"40", "5677", "3017"},
                                               std::vector<std::string>{"[40,", "5677,", "3017]"}}) {
    std::vector<std::string> cmd = {"tokenize", "--decode"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    const auto r = run_kq(cmd);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, want.out);
  }
}

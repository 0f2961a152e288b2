// KeepPattern (src/quant/keep_pattern.hpp): bounded PCRE2 compile and search
// of layer-name patterns; hostile patterns are InvalidArgument, not a stack
// overflow (std::regex) or an unbounded search.
#include "quant/keep_pattern.hpp"

#include <gtest/gtest.h>

#include <string>

#include "kq/error.hpp"

namespace kq {
namespace {

TEST(KeepPattern, SearchesLikeTheEcmaScriptRegexItReplaces) {
  EXPECT_TRUE(KeepPattern("mlp\\.c_proj").search("transformer.h.0.mlp.c_proj"));
  EXPECT_FALSE(KeepPattern("mlp\\.c_proj").search("transformer.h.0.attn.c_proj"));
  EXPECT_TRUE(KeepPattern(R"(^(\w+\.)*mlp\.c_proj$)").search("transformer.h.11.mlp.c_proj"));
  EXPECT_FALSE(KeepPattern(R"(^(\w+\.)*mlp\.c_proj$)").search("transformer.h.11.mlp.c_proj2"));
  EXPECT_TRUE(KeepPattern("[mlp]").search("lm_head"));  // a character class, not "mlp"
  EXPECT_FALSE(KeepPattern("[xyz]").search("lm_head"));
  EXPECT_TRUE(KeepPattern("layers\\.(0|1)\\.").search("model.layers.1.mlp.up_proj"));
}

TEST(KeepPattern, InvalidPatternsAreNamed) {
  for (const std::string p : {"((", "a[", "*a"}) {
    try {
      KeepPattern k(p);
      ADD_FAILURE() << p << " compiled";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + p + "' is not a valid regular expression"),
                std::string::npos)
          << e.what();
    }
  }
}

// One dialect, PCRE2's, for the check and the search: a lookbehind (valid
// PCRE2) was refused as "not a valid regular expression (ECMAScript)" while
// PCRE-only "\\Q...\\E" and "++" were accepted and searched PCRE-style.
TEST(KeepPattern, IsPcre2ForTheCheckAndTheSearch) {
  const KeepPattern behind(R"((?<=h\.0\.)attn)");
  EXPECT_TRUE(behind.search("transformer.h.0.attn.c_attn"));
  EXPECT_FALSE(behind.search("transformer.h.1.attn.c_attn"));
  EXPECT_TRUE(KeepPattern(R"(\Qh.0.\E)").search("transformer.h.0.mlp.c_fc"));
  EXPECT_FALSE(KeepPattern(R"(\Qh.0.\E)").search("transformer.hx0ymlp.c_fc"));  // '.' quoted, not any character
  EXPECT_TRUE(KeepPattern(R"(h\.0++\.)").search("transformer.h.0.mlp.c_fc"));
  EXPECT_TRUE(KeepPattern("(?i)MLP").search("transformer.h.0.mlp.c_fc"));
  EXPECT_FALSE(KeepPattern("MLP").search("transformer.h.0.mlp.c_fc"));
  try {
    KeepPattern k("(?<=a+)b");  // PCRE2 10.42 refuses a lookbehind of unbounded length
    ADD_FAILURE() << "compiled";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(std::string(e.what()).find("ECMAScript"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is not a valid regular expression:"), std::string::npos) << e.what();
  }
}

TEST(KeepPattern, HostilePatternsAreRefusedNotRun) {
  EXPECT_THROW(KeepPattern(std::string(20000, '(') + std::string(20000, ')')), InvalidArgument);
  EXPECT_THROW(KeepPattern(std::string(100000, 'a')), InvalidArgument);
  EXPECT_THROW(KeepPattern(std::string(kMaxKeepPatternNesting + 1, '(') + "a" +
                           std::string(kMaxKeepPatternNesting + 1, ')')),
               InvalidArgument);
  EXPECT_NO_THROW(KeepPattern(std::string(kMaxKeepPatternLength, 'a')));
  EXPECT_NO_THROW(KeepPattern(std::string(8, '(') + "a" + std::string(8, ')')));
  try {
    KeepPattern k("(.*)*x$");
    ADD_FAILURE() << "(.*)*x$ compiled";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("backtracks too much"), std::string::npos) << e.what();
  }
}

TEST(KeepPattern, InvalidUtf8IsRefused) {
  // Saved in a quantized folder's config.json (round-12 finding: an internal error after all the work).
  for (const std::string& p : {std::string("h\xff"), std::string("\xc3("), std::string("a\xed\xa0\x80")}) {
    try {
      KeepPattern k(p);
      ADD_FAILURE() << "compiled";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("is not valid UTF-8"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(KeepPattern("caf\xc3\xa9|c_fc").search("transformer.h.0.mlp.c_fc"));  // valid UTF-8 is fine
}

}  // namespace
}  // namespace kq

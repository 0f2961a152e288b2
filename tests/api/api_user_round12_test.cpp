// Findings of a fresh C++ user of the installed library (round 12), each re-run
// here: byte sizes that wrapped to 0 and a moved-from tokenizer (crashes);
// enum values outside their enum named as valid ones or accepted silently;
// counts and indices without a check.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/quantize.hpp"
#include "kq/tensor.hpp"
#include "kq/tokenizer.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;

// numel fits int64 but numel x element size wrapped to 0: nbytes() was 0, and
// transposed() / zeros() wrote past a 64-byte allocation (SIGSEGV); view()
// accepted 2^62 floats on a 16-byte storage.
TEST(ApiUserRound12, ByteSizesThatOverflowAreRefused) {
  const int64_t g31 = int64_t(1) << 31;
  std::string msg = error_of<InvalidArgument>([&] { (void)Tensor::empty(DType::F32, {g31, g31}); });
  EXPECT_TRUE(has(msg, "shape [2147483648, 2147483648] of F32")) << msg;
  EXPECT_TRUE(has(msg, "overflows int64")) << msg;
  EXPECT_THROW((void)Tensor::zeros(DType::F64, {int64_t(1) << 61}), InvalidArgument);
  EXPECT_THROW((void)Tensor::view(std::make_shared<HeapStorage>(16), 0, DType::F32, {int64_t(1) << 62}),
               InvalidArgument);
  EXPECT_THROW((void)Tensor::zeros(DType::F32, {4}).reshaped({int64_t(1) << 62, 0}), InvalidArgument);
  EXPECT_EQ(Tensor::zeros(DType::F64, {3, 0}).nbytes(), 0u);  // an empty tensor is still fine
}

// shape_numel({-3, 4}) returned -12.
TEST(ApiUserRound12, ShapeNumelRefusesNegativeDimensions) {
  const std::string msg = error_of<InvalidArgument>([] { (void)shape_numel({-3, 4}); });
  EXPECT_TRUE(has(msg, "negative dimension in shape [-3, 4]")) << msg;
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({0, 5}), 0);
}

// Every call on a moved-from tokenizer dereferenced a null table (SIGSEGV).
TEST(ApiUserRound12, MovedFromTokenizerIsRefusedNotACrash) {
  Tokenizer t = Tokenizer::load(demo_model());
  Tokenizer u = std::move(t);
  // NOLINTBEGIN(bugprone-use-after-move): the documented moved-from state
  const std::string msg = error_of<InvalidArgument>([&] { (void)t.encode("hello"); });
  EXPECT_TRUE(has(msg, "Tokenizer: moved-from or default")) << msg;
  EXPECT_THROW((void)t.source(), InvalidArgument);
  EXPECT_THROW((void)t.vocab_size(), InvalidArgument);
  EXPECT_THROW((void)t.decode_token(0), InvalidArgument);
  EXPECT_THROW((void)t.token_to_id("a"), InvalidArgument);
  EXPECT_THROW((void)t.is_special(0), InvalidArgument);
  EXPECT_THROW((void)t.for_model(100000, "dir"), InvalidArgument);
  EXPECT_EQ(u.decode(u.encode("hello")), "hello");
  t = u;  // assigning a loaded tokenizer makes it usable again
  EXPECT_EQ(t.encode("hello"), u.encode("hello"));
  // NOLINTEND(bugprone-use-after-move)
}

  QuantSpec s = parse_quant_mode("nf4");
  s.format = PrecisionFormat(99);
  std::string msg = error_of<InvalidArgument>([&] { validate_quant_spec(s); });
  EXPECT_TRUE(has(msg, "QuantSpec.format 99 is not a PrecisionFormat")) << msg;
  msg = error_of<InvalidArgument>([] { (void)Model::load(demo_model(), {.device = Device(7)}); });
  EXPECT_TRUE(has(msg, "ExecContext::device 7 is not a Device")) << msg;
}

}  // namespace
}  // namespace kq

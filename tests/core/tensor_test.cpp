#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kq/error.hpp"
#include "kq/tensor.hpp"

using namespace kq;

TEST(DType, Bf16RoundTripAndRounding) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 3.140625f, std::ldexp(1.0f, -100), 65536.0f})
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(f)), f) << f;
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16AllCodesRoundTrip) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const float f = f16_to_f32(uint16_t(c));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), c) << "code " << c;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
}

TEST(DType, F16RoundsToNearestEven) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> u(-70000.f, 70000.f);
  for (int i = 0; i < 100000; ++i) {
    const float f = u(rng) * (i % 3 == 0 ? 1e-5f : 1.0f);
    const float r = f16_to_f32(f32_to_f16(f));
    if (std::isinf(r)) { EXPECT_GE(std::fabs(f), 65504.f); continue; }
    // no other f16 value is strictly closer
    const uint16_t c = f32_to_f16(f);
    for (int d : {-1, 1}) {
      const float o = f16_to_f32(uint16_t((c & 0x7fff) ? c + d : c));
      if (!std::isnan(o) && !std::isinf(o)) {
        EXPECT_LE(std::fabs(r - f), std::fabs(o - f)) << f;
      }
    }
  }
}

TEST(Tensor, ShapesViewsAndErrors) {
  Tensor t = Tensor::zeros(DType::F32, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.dim(-1), 3);
  EXPECT_THROW(t.dim(2), InvalidArgument);
  EXPECT_THROW(t.reshaped({4, 2}), InvalidArgument);
  EXPECT_THROW(Tensor::empty(DType::F32, {-1}), InvalidArgument);
  float* p = t.mutable_data<float>();
  for (int i = 0; i < 6; ++i) p[i] = float(i);
  Tensor tt = t.transposed();
  EXPECT_EQ(tt.shape(), (Shape{3, 2}));
  EXPECT_EQ(tt.data<float>()[1], 3.0f);
  Tensor row = t.slice_rows(1, 2);
  EXPECT_EQ(row.data<float>()[0], 3.0f);
  auto st = std::make_shared<HeapStorage>(16);
  EXPECT_THROW(Tensor::view(st, 8, DType::F32, {3}), InvalidArgument);
}

// raw_mut() (and mutable_data()) of an undefined tensor returned nullptr silently, while clone(), to_f32() and
// transposed() throw: a writer then crashed far from the cause.
TEST(Tensor, UndefinedTensorIsRefusedByRawMutLikeClone) {
  Tensor t;
  EXPECT_EQ(t.raw(), nullptr);
  EXPECT_THROW(t.clone(), InvalidArgument);
  EXPECT_THROW(t.to_f32(), InvalidArgument);
  EXPECT_THROW(t.transposed(), InvalidArgument);
  try {
    (void)t.raw_mut();
    ADD_FAILURE() << "raw_mut() of an undefined tensor did not throw";
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(), "raw_mut() of an undefined (default-constructed) tensor");
  }
  EXPECT_THROW((void)t.mutable_data<float>(), InvalidArgument);
  // Tester 24 (F8): reshaped() of an undefined tensor did not throw, transposed() said "got []".
  for (const auto& [what, call] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"reshaped()", [&] { (void)t.reshaped({1}); }}, {"transposed()", [&] { (void)t.transposed(); }}}) {
    try {
      call();
      ADD_FAILURE() << what << " of an undefined tensor did not throw";
    } catch (const InvalidArgument& e) {
      EXPECT_EQ(std::string(e.what()), what + " of an undefined (default-constructed) tensor");
    }
  }
}

// `x = std::move(x)` left a [3, 4] tensor defined with shape [] (numel 1) over its 48 bytes: the defaulted move
// assignment self-moved the shape vector, which empties it. A self-move leaves the tensor as it was.
TEST(Tensor, SelfMoveAssignmentLeavesTheTensorUnchanged) {
  Tensor x = Tensor::zeros(DType::F32, {3, 4});
  x.mutable_data<float>()[11] = 7.0f;
  const void* bytes = x.raw();
  Tensor& same = x;
  x = std::move(same);  // NOLINT(bugprone-use-after-move,clang-diagnostic-self-move): the case under test
  EXPECT_TRUE(x.defined());
  EXPECT_EQ(x.shape(), (Shape{3, 4}));
  EXPECT_EQ(x.numel(), 12);
  EXPECT_EQ(x.nbytes(), 48u);
  EXPECT_EQ(x.raw(), bytes);
  EXPECT_EQ(x.data<float>()[11], 7.0f);
  // A move from another tensor still takes it over and leaves the source undefined.
  Tensor y;
  y = std::move(x);
  EXPECT_EQ(y.shape(), (Shape{3, 4}));
  EXPECT_EQ(y.raw(), bytes);
  EXPECT_FALSE(x.defined());  // NOLINT(bugprone-use-after-move): the documented moved-from state
  EXPECT_EQ(x.shape(), Shape{});
}

// Model logits vs the shipped reference logits (F32 [32, 8192] from the
// reference implementation), and KV-cache decode vs one full pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

using namespace kq;
using kq::testing::shared_dir;

namespace {

struct Reference {
  std::vector<int32_t> ids;
  std::vector<float> logits;  // [ids.size(), vocab]
};

Reference load_reference(const std::filesystem::path& dir) {
  Reference r;
  std::ifstream js(dir / "ref_logits.json");
  const auto j = nlohmann::json::parse(js);
  r.ids = j.at("input_ids").get<std::vector<int32_t>>();
  const int64_t rows = j.at("shape")[0].get<int64_t>(), cols = j.at("shape")[1].get<int64_t>();
  r.logits.resize(size_t(rows * cols));
  std::ifstream bin(dir / j.at("logits_file").get<std::string>(), std::ios::binary);
  bin.read(reinterpret_cast<char*>(r.logits.data()), std::streamsize(r.logits.size() * sizeof(float)));
  EXPECT_TRUE(bin.good()) << "short read of reference logits in " << dir;
  return r;
}

// ||a − b||₂ / ||b||₂ over [begin, end) of both.
double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

class ModelReference : public ::testing::TestWithParam<const char*> {};

TEST_P(ModelReference, FullPassMatchesReferenceLogits) {
  const std::string rel = std::string("models/") + GetParam();
  KQ_REQUIRE_SHARED(rel);
  const auto dir = shared_dir() / rel;
  const Reference ref = load_reference(dir);
  auto model = Model::load(dir, ExecContext{Device::CPU, 2});
  const int64_t V = model->config().vocab_size, n = int64_t(ref.ids.size());
  ASSERT_EQ(ref.logits.size(), size_t(n * V));
  KVCache cache = model->make_cache();
  std::vector<float> logits(size_t(n * V));
  model->forward(ref.ids, cache, logits.data());
  EXPECT_EQ(cache.size(), n);
  const double err = rel_l2(logits.data(), ref.logits.data(), logits.size());
  std::printf("%s: relative L2 error vs reference logits %.3g\n", GetParam(), err);
  EXPECT_LE(err, 1e-4);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_LE(rel_l2(logits.data() + i * V, ref.logits.data() + i * V, size_t(V)), 1e-4) << "row " << i;
}

TEST_P(ModelReference, DecodeWithKVCacheEqualsFullPass) {
  const std::string rel = std::string("models/") + GetParam();
  KQ_REQUIRE_SHARED(rel);
  const auto dir = shared_dir() / rel;
  const Reference ref = load_reference(dir);
  auto model = Model::load(dir, ExecContext{Device::CPU, 2});
  const int64_t V = model->config().vocab_size, n = int64_t(ref.ids.size());
  std::vector<float> full(static_cast<size_t>(n * V)), step(full.size()), last(static_cast<size_t>(V));
  KVCache cache = model->make_cache(n);
  model->forward(ref.ids, cache, full.data());

  // One token at a time.
  cache.reset();
  for (int64_t i = 0; i < n; ++i)
    model->forward(std::span(ref.ids).subspan(size_t(i), 1), cache, step.data() + i * V);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_LE(rel_l2(step.data() + i * V, full.data() + i * V, size_t(V)), 1e-5) << "token " << i;

  // A prompt, then decode, then a chunk: 10 + 1 + 21 tokens; last-row logits only.
  cache.reset();
  int64_t pos = 0;
  for (int64_t len : {10, 1, 21}) {
    model->forward(std::span(ref.ids).subspan(size_t(pos), size_t(len)), cache, last.data(),
                   /*all_logits=*/false);
    pos += len;
    EXPECT_LE(rel_l2(last.data(), full.data() + (pos - 1) * V, size_t(V)), 1e-5)
        << "after " << pos << " tokens";
  }
  EXPECT_EQ(cache.size(), n);
  EXPECT_THROW(model->forward(std::span(ref.ids).subspan(0, 1), cache, last.data()),
               InvalidArgument);  // full
}

TEST_P(ModelReference, SingleThreadEqualsTwoThreads) {
  const std::string rel = std::string("models/") + GetParam();
  KQ_REQUIRE_SHARED(rel);
  const auto dir = shared_dir() / rel;
  const Reference ref = load_reference(dir);
  auto model = Model::load(dir, ExecContext{Device::CPU, 1});
  const int64_t V = model->config().vocab_size, n = int64_t(ref.ids.size());
  std::vector<float> one(size_t(n * V)), two(size_t(n * V));
  KVCache cache = model->make_cache(n);
  model->forward(ref.ids, cache, one.data());
  model->set_context(ExecContext{Device::CPU, 2});
  cache.reset();
  model->forward(ref.ids, cache, two.data());
  EXPECT_LE(rel_l2(one.data(), two.data(), one.size()), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, ModelReference,
                         ::testing::Values("gpt2-tiny", "gpt2-small", "llama-small"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

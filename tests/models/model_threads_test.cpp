// One Model used from two threads at once: forward() and decode_batch() share
// the model's scratch buffers, so the second call throws instead of silently
// corrupting both results (a tester's perplexities differed run to run); a call
// that changes the model throws likewise while a forward() runs (Model::InUse).
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/holding_linear.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

using namespace kq;

namespace {

ModelConfig tiny_gpt2() { return kq::testing::tiny_gpt2_config(); }

}  // namespace

TEST(ModelThreads, SecondThreadOnTheSameModelThrowsInsteadOfCorrupting) {
  auto m = Model::random(tiny_gpt2(), 3);
  kq::testing::Gate gate;
  kq::testing::hold_layer0(*m, gate);
  const std::vector<int32_t> tokens = {1, 2, 3};
  std::string first_error;
  std::thread first([&] {
    try {
      KVCache cache = m->make_cache();
      m->forward(tokens, cache, nullptr);
    } catch (const std::exception& e) {
      first_error = e.what();
    }
  });
  ASSERT_TRUE(gate.wait_inside());
  // The first forward() is held inside layer 0: this one overlaps it for sure.
  std::string msg, batch_msg;
  try {
    KVCache cache = m->make_cache();
    m->forward(tokens, cache, nullptr);
  } catch (const InvalidArgument& e) {
    msg = e.what();
  }
  try {
    KVCache cache = m->make_cache();
    const int32_t token = 1;
    KVCache* caches[1] = {&cache};
    m->decode_batch(std::span(&token, 1), caches, nullptr);
  } catch (const InvalidArgument& e) {
    batch_msg = e.what();
  }
  gate.release();
  first.join();
  EXPECT_EQ(msg,
            "Model::forward called while another call on the same Model runs (a Model is not thread-safe; use one "
            "Model per thread)");
  EXPECT_NE(batch_msg.find("Model::decode_batch called while another call on the same Model runs"), std::string::npos)
      << batch_msg;
  EXPECT_EQ(first_error, "");  // the call already running is not disturbed
  // Once it is done, the model serves any thread again.
  std::thread later([&] {
    KVCache cache = m->make_cache();
    EXPECT_NO_THROW(m->forward(tokens, cache, nullptr));
  });
  later.join();
}

// Every call that changes a Model (set_context, to_device, set_cuda_graphs,
// hold_unquantized_in_disk_dtype) made while another thread's forward() runs
// throws, naming itself, before it changes anything: set_context and to_device
// changed the threads (and to_device the ops) under the running forward. The
// forward's logits are those of the same model run alone.
TEST(ModelThreads, CallsThatChangeTheModelThrowWhileAForwardRuns) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  const int64_t vocab = tiny_gpt2().vocab_size;
  std::vector<float> alone(size_t(8 * vocab)), logits(size_t(8 * vocab));
  std::thread([&] {  // on a fresh thread too: the same OpenMP default thread count
    auto ref = Model::random(tiny_gpt2(), 3);
    KVCache cache = ref->make_cache();
    ref->forward(tokens, cache, alone.data());
  }).join();
  auto m = Model::random(tiny_gpt2(), 3);
  kq::testing::Gate gate;
  kq::testing::hold_layer0(*m, gate);
  std::string first_error;
  std::thread first([&] {
    try {
      KVCache cache = m->make_cache();
      m->forward(tokens, cache, logits.data());
    } catch (const std::exception& e) {
      first_error = e.what();
    }
  });
  ASSERT_TRUE(gate.wait_inside());
  const ExecContext one{Device::CPU, 1};
  const std::pair<const char*, std::function<void()>> calls[] = {
      {"Model::set_context", [&] { m->set_context(one); }},
      {"Model::to_device", [&] { m->to_device(one); }},
      {"Model::set_cuda_graphs", [&] { m->set_cuda_graphs(false); }},
      {"Model::hold_unquantized_in_disk_dtype", [&] { m->hold_unquantized_in_disk_dtype(); }},
  };
  std::vector<std::string> messages;
  for (const auto& [name, call] : calls) messages.push_back(kq::testing::error_of<InvalidArgument>(call));
  gate.release();
  first.join();
  for (size_t i = 0; i < messages.size(); ++i)
    EXPECT_EQ(messages[i], std::string(calls[i].first) +
                               " called while another call on the same Model runs (a Model is not thread-safe; "
                               "use one Model per thread)");
  EXPECT_EQ(first_error, "");
  EXPECT_EQ(logits, alone);  // bit for bit: nothing changed under the running forward
  EXPECT_EQ(m->context().threads, 0);
  // Once the forward is done, the same calls pass.
  EXPECT_NO_THROW(m->set_context(one));
  EXPECT_NO_THROW(m->to_device(one));
  EXPECT_EQ(m->context().threads, 1);
}

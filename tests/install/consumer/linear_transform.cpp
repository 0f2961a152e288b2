// Built against the installed headers only: a LinearTransform (Model::random's
// per-layer hook) and LinearSlot::op need kq::Linear complete (kq/linear.hpp).
#include <cstdio>
#include <memory>
#include <string>

#include "kq/kq.hpp"

int main() {
  kq::ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 16;
  int layers = 0;
  auto m = kq::Model::random(c, 1, {}, [&](const std::string&, std::unique_ptr<kq::Linear> op) {
    ++layers;
    return op;
  });
  for (const kq::LinearSlot& s : m->linear_layers())
    std::printf("%s: %s, %lld x %lld\n", s.name.c_str(), (*s.op)->format().c_str(),
                static_cast<long long>((*s.op)->out_features()), static_cast<long long>((*s.op)->in_features()));
  return layers == int(m->linear_layers().size()) ? 0 : 1;
}

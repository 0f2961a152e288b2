// Safetensors writing, compatible with the reference reader
// (https://github.com/huggingface/safetensors): the header is padded with
// spaces so the data section starts at an 8-byte boundary, and tensors are
// laid out back to back with no gaps (the reference rejects gaps and trailing
// bytes). To keep every tensor as aligned as possible without gaps, tensors
// are ordered by the alignment their byte size permits (multiples of 8 first,
// then 4, 2, 1; by name within a class): every tensor whose size is a
// multiple of 8 bytes starts on an 8-byte boundary, and every tensor starts
// on a multiple of its element size.
#include <algorithm>
#include <bit>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "kq/error.hpp"

namespace kq {

namespace {

/// log2 of the largest power of two (up to 8) dividing n; 3 for n == 0.
int alignment_class(size_t n) { return n == 0 ? 3 : std::min(3, std::countr_zero(n)); }

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  std::vector<std::pair<const std::string*, const Tensor*>> order;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) raise<InvalidArgument>("{}: empty tensor name", file);
    if (name == "__metadata__") raise<InvalidArgument>("{}: '__metadata__' is reserved, not a tensor name", file);
    if (!t.defined()) raise<InvalidArgument>("{}: tensor '{}' is undefined", file, name);
    order.emplace_back(&name, &t);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return alignment_class(a.second->nbytes()) > alignment_class(b.second->nbytes());
  });  // stable: names stay sorted within a class (std::map order)

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : order) {
    const uint64_t n = t->nbytes();
    header[*name] = {{"dtype", std::string(dtype_name(t->dtype()))},
                     {"shape", t->shape()},
                     {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {  // invalid UTF-8 in a name or metadata value
    raise<InvalidArgument>("{}: cannot encode the header: {}", file, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // 8 + N is a multiple of 8

  io::write_file_atomic(path, [&](io::AtomicFileSink& sink) {
    const uint64_t n = text.size();  // little-endian host (checked in safetensors.cpp)
    sink.write(&n, 8);
    sink.write(text);
    for (const auto& [name, t] : order) sink.write(t->raw(), t->nbytes());
  });
}

}  // namespace kq

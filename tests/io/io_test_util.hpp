#pragma once
// Helpers for the io tests: raw safetensors byte strings and error checks.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>

#include "kq/error.hpp"

namespace kq::testing {

/// Bytes of a safetensors file: 8-byte little-endian N, `header` (N bytes), `data`.
inline std::string raw_safetensors(const std::string& header, const std::string& data = {}) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

/// Same, with an arbitrary (possibly lying) header length field.
inline std::string raw_safetensors_n(uint64_t n, const std::string& header, const std::string& data = {}) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << p;
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary | std::ios::ate);
  std::string s(size_t(f.tellg()), '\0');
  f.seekg(0);
  f.read(s.data(), std::streamsize(s.size()));
  return s;
}

/// Runs `fn`, which must throw exactly E (or a subclass) whose message
/// contains every string in `needles`. Returns the message.
template <class E>
std::string expect_throw_with(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message: " << msg << "\nmissing: " << n;
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

}  // namespace kq::testing

#pragma once
// Structure-aware mutations of a JSON document, for robustness tests of the
// parsers of user files (config.json, tokenizer.json, ...): each mutation
// changes one place of a valid document, so a parser must either accept the
// result or refuse it with kq::Error, never with another exception or a crash.
// The list is deterministic (no random seed): a failure names the mutation.
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kq::testing {

/// One mutated document and what was done ("/rope_scaling/factor := -1").
struct JsonMutation {
  std::string what;
  nlohmann::json doc;
};

/// Values put in place of an existing one: every JSON type, numbers at and
/// beyond the integer ranges parsers convert to, empty and odd strings (valid
/// UTF-8 only: a parsed file never holds anything else).
inline std::vector<nlohmann::json> json_replacement_values() {
  using nlohmann::json;
  return {nullptr,
          true,
          false,
          0,
          -1,
          1.5,
          -0.0,
          1e300,
          -1e300,
          std::numeric_limits<int64_t>::max(),
          std::numeric_limits<int64_t>::min(),
          std::numeric_limits<uint64_t>::max(),
          int64_t(1) << 31,
          "",
          "x",
          std::string("a\0b", 3),
          "\u00e9\U0001F600",
          json::array(),
          json::array({1, "a", nullptr}),
          json::object(),
          json{{"type", "x"}}};
}

/// Every mutation of `root` at the places reachable through objects and the
/// first `max_elements` elements of each array, down to `max_depth` levels
/// below the root: the value replaced by each of json_replacement_values(),
/// and the value removed (an object's member, an array's element). `skip(pointer)` true leaves
/// a place and everything below it alone (e.g. a 50k-entry vocabulary).
inline std::vector<JsonMutation> json_mutations(
    const nlohmann::json& root, int max_depth = 4, size_t max_elements = 3,
    const std::function<bool(const nlohmann::json::json_pointer&)>& skip = {}) {
  using nlohmann::json;
  std::vector<JsonMutation> out;
  const std::vector<json> values = json_replacement_values();
  const std::function<void(const json::json_pointer&, const json&, int)> visit =
      [&](const json::json_pointer& at, const json& node, int depth) {
        if (skip && skip(at)) return;
        if (!at.empty()) {
          for (const json& v : values) {
            json doc = root;
            doc[at] = v;
            out.push_back({at.to_string() + " := " + v.dump(-1, ' ', true), std::move(doc)});
          }
          json doc = root;
          json& parent = doc[at.parent_pointer()];
          if (parent.is_object())
            parent.erase(at.back());
          else
            parent.erase(std::stoul(at.back()));
          out.push_back({at.to_string() + " removed", std::move(doc)});
        }
        if (depth >= max_depth) return;
        if (node.is_object()) {
          for (auto it = node.begin(); it != node.end(); ++it) visit(at / it.key(), it.value(), depth + 1);
        } else if (node.is_array()) {
          for (size_t i = 0; i < node.size() && i < max_elements; ++i) visit(at / i, node[i], depth + 1);
        }
      };
  visit(json::json_pointer(), root, 0);
  return out;
}

}  // namespace kq::testing

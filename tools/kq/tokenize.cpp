// `kq tokenize`: the token ids a model's tokenizer gives a text, and the text of token ids (--decode), to compare
// with another tokenizer (Hugging Face's) when the perplexities differ.
#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "demo_files.hpp"
#include "format_util.hpp"
#include "io/file_kind.hpp"
#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "path_option.hpp"
#include "token_text.hpp"

namespace kq::cli {
namespace {

struct TokenizeOptions {
  std::string model;              ///< --model; empty: the shipped demo model (default_model_dir)
  std::vector<std::string> args;  ///< TEXT (one), or with --decode the ids; "-": standard input (set by the callback)
  std::string text;               ///< the first positional argument, exactly as given
  std::vector<std::string> more;  ///< the positional arguments after it (--decode's further ids)
  std::string file;               ///< --file: the input is this file's bytes ("-": standard input)
  std::string json;               ///< --json FILE ("-": the JSON alone on standard output)
  bool tokens = false;            ///< --tokens: one line per token, then the count
  bool decode = false;            ///< --decode: the input is token ids, the output their text
  bool no_newline = false;        ///< --no-newline: --decode's text alone, without the newline after it
  bool special_tokens = false;    ///< --special-tokens: recognize special added tokens in the text
};

/// The most bytes read from --file or standard input (a text longer than any model's context by far).
constexpr size_t kMaxInputBytes = size_t(1) << 28;

/// All the bytes of `f` (at most kMaxInputBytes), read to its end as they come; `name` names the input in
/// errors: Error when a read fails or there are more bytes than that.
std::string read_all_bytes(std::FILE* f, const std::string& name) {
  std::string bytes;
  char buf[1 << 16];
  for (;;) {
    const size_t n = std::fread(buf, 1, sizeof buf, f);
    bytes.append(buf, n);
    if (bytes.size() > kMaxInputBytes)
      raise<Error>("{}: more than {} bytes; kq tokenize reads at most that", name, kMaxInputBytes);
    if (n < sizeof buf) break;
  }
  if (std::ferror(f)) raise<Error>("{}: read failed: {}", name, std::strerror(errno));
  return bytes;
}

/// The input: its bytes and how messages name it.
struct Input {
  std::string bytes;
  std::string name;  ///< "--file 'x'", "standard input" or "TEXT"
};

/// The input: --file's bytes (a regular file; "-" is standard input), else standard input for TEXT "-", else
/// TEXT itself (the ids joined by spaces with --decode). InvalidArgument names a --file that is not a regular
/// file (missing, a folder, a FIFO: pipe it to '-' instead).
Input read_input(const TokenizeOptions& o) {
  if (o.file == "-" || (o.file.empty() && o.args.size() == 1 && o.args[0] == "-"))
    return {read_all_bytes(stdin, "standard input"), "standard input"};
  if (!o.file.empty()) {
    if (const auto why = io::why_not_regular_file(o.file))  // never opened: a FIFO or a device could block
      raise<InvalidArgument>("--file: '{}' {}{}", o.file, *why,
                             std::filesystem::is_fifo(o.file) ? " (to read a pipe, give --file - and pipe it to "
                                                                "standard input)"
                                                              : "");
    std::FILE* f = std::fopen(o.file.c_str(), "rb");
    if (!f) raise<InvalidArgument>("--file: '{}': cannot open it: {}", o.file, std::strerror(errno));
    const std::unique_ptr<std::FILE, int (*)(std::FILE*)> close(f, &std::fclose);
    const std::string name = fmt::format("--file '{}'", o.file);
    return {read_all_bytes(f, name), name};
  }
  std::string joined;
  for (const std::string& a : o.args) joined.append(joined.empty() ? "" : " ").append(a);
  return {joined, "TEXT"};
}

/// InvalidArgument for the token id `item` (its text as given) outside [0, vocab_size) of the tokenizer
/// (`source` names it).
[[noreturn]] void id_out_of_range(std::string_view item, const Tokenizer& tok, const std::string& source) {
  raise<InvalidArgument>("--decode: token id {} is out of range: the tokenizer of {} has {} tokens (ids 0 to {})",
                         item, source, tok.vocab_size(), tok.vocab_size() - 1);
}

/// The ids of a JSON object `text` (`input` names where it came from, `first_offset` is the offset of text[0]
/// there): its "ids" list, as kq tokenize --json
/// writes it ({"ids": [...], "tokens": [...]}; other members are ignored). InvalidArgument when it is not valid
/// JSON, not an object with an "ids" list, or an element is not an integer (naming it); ids out of range as
/// parse_ids.
std::vector<int32_t> parse_json_ids(std::string_view text, const std::string& input, uint64_t first_offset,
                                    const Tokenizer& tok, const std::string& source) {
  nlohmann::json j;
  try {
    j = io::parse_json_strict(text, input, first_offset);
  } catch (const FormatError& e) {
    raise<InvalidArgument>("--decode: the input starts with '{{' but is not valid JSON: {}", e.what());
  }
  if (!j.is_object() || !j.contains("ids") || !j["ids"].is_array())
    raise<InvalidArgument>("--decode: {} is a JSON object without an \"ids\" list: give the ids (a list such as "
                           "[40, 5677], or kq tokenize --json's {{\"ids\": [...], ...}})",
                           input);
  std::vector<int32_t> ids;
  const nlohmann::json& list = j["ids"];
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& v = list[i];
    if (!v.is_number_integer())
      raise<InvalidArgument>("--decode: {}: \"ids\"[{}] is {}, not a token id (an integer)", input, i,
                             io::json_excerpt(v, 40));
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() < uint64_t(tok.vocab_size())
                                                  : v.get<int64_t>() >= 0 && v.get<int64_t>() < tok.vocab_size();
    if (!in_range) id_out_of_range(v.dump(), tok, source);
    ids.push_back(int32_t(v.get<int64_t>()));
  }
  return ids;
}

/// The ids written in `text` (`input` names where it came from): integers separated by white space and/or one
/// comma each, the whole list optionally in one pair of square brackets (a JSON list, as Python prints one:
/// "[40, 5677, 3017]"); empty (or "[]"): no ids. A leading UTF-8 byte-order mark (EF BB BF, as some Windows
/// editors write) is skipped; a JSON object (kq tokenize --json's output) gives its "ids" list (parse_json_ids).
/// InvalidArgument naming the malformed part: an item that is not an integer, an empty element (a comma with no
/// id before or after it: "1,,2", ",1", "[1,]"), a '[' without its ']' (or the reverse), a bracket inside the
/// list (nested lists, or one not around the whole list), and an id outside [0, vocab_size) of the tokenizer
/// (`source` names it). Byte offsets in messages count from the start of `text` (the mark included).
std::vector<int32_t> parse_ids(std::string_view text, const std::string& input, const Tokenizer& tok,
                               const std::string& source) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  const auto offset = [&](const char* p) { return size_t(p - text.data()); };
  std::string_view rest = text;
  if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3);
  const auto trim = [&](std::string_view& v) {
    while (!v.empty() && is_space(v.front())) v.remove_prefix(1);
    while (!v.empty() && is_space(v.back())) v.remove_suffix(1);
  };
  trim(rest);
  if (rest.starts_with('{')) return parse_json_ids(rest, input, offset(rest.data()), tok, source);
  const bool bracketed = rest.starts_with('[');
  if (bracketed) {
    if (!rest.ends_with(']') || rest.size() < 2)
      raise<InvalidArgument>("--decode: the list opened by '[' at byte {} has no closing ']' at its end (ids are "
                             "integers separated by spaces or commas, optionally in one [ ])",
                             offset(rest.data()));
    rest = rest.substr(1, rest.size() - 2);
  } else if (rest.ends_with(']')) {
    raise<InvalidArgument>("--decode: the ']' at byte {} closes no '[' (ids are integers separated by spaces or "
                           "commas, optionally in one [ ])",
                           offset(rest.data() + rest.size() - 1));
  }
  if (const size_t at = rest.find_first_of("[]"); at != std::string_view::npos)
    raise<InvalidArgument>("--decode: '{}' at byte {} is inside the list: {}", rest[at], offset(rest.data() + at),
                           bracketed && rest[at] == '['
                               ? "nested lists are not token ids (one [ ] around the whole list at most)"
                               : "brackets go only around the whole list (one [ ] at most)");
  std::vector<int32_t> ids;
  const char* comma = nullptr;  // the comma after the last id, not yet followed by one
  for (;;) {
    while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
    if (rest.empty()) break;
    if (rest.front() == ',') {
      if (ids.empty() || comma)
        raise<InvalidArgument>("--decode: empty element: the ',' at byte {} has no id before it", offset(rest.data()));
      comma = rest.data();
      rest.remove_prefix(1);
      continue;
    }
    size_t end = 0;
    while (end < rest.size() && !is_space(rest[end]) && rest[end] != ',') ++end;
    const std::string_view item = rest.substr(0, end);
    rest.remove_prefix(end);
    comma = nullptr;
    int64_t id = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    const bool integer =
        ptr == item.data() + item.size() && (ec == std::errc() || ec == std::errc::result_out_of_range);
    if (!integer)
      raise<InvalidArgument>("--decode: '{}' is not a token id (ids are integers separated by spaces or commas)",
                             io::name_excerpt(item, 40));
    if (ec == std::errc::result_out_of_range || id < 0 || id >= tok.vocab_size()) id_out_of_range(item, tok, source);
    ids.push_back(int32_t(id));
  }
  if (comma)
    raise<InvalidArgument>("--decode: empty element: the ',' at byte {} has no id after it", offset(comma));
  return ids;
}

/// Warns when `text` (the input of the encoding) is not valid UTF-8, naming `source` and the first bad byte's
/// offset: the tokenizer encodes any bytes (include/kq/tokenizer.hpp, "Invalid UTF-8"), but a Hugging Face
/// tokenizer takes a Python str, which cannot hold them, so there are no ids there to compare with.
void warn_if_not_utf8(std::string_view text, const std::string& source) {
  const auto at = io::find_invalid_utf8(text);
  if (!at) return;
  warn(fmt::format("{} is not valid UTF-8 (byte offset {}): kq's tokenizer encodes any bytes (each run of ill-formed "
                   "bytes is a pre-token of its own, BPE-encoded from its single bytes; decoding the ids gives the "
                   "same bytes back), but a Hugging Face tokenizer takes only valid text, so its ids for these bytes "
                   "are not comparable",
                   source, *at));
}

void run_tokenize(const TokenizeOptions& o) {
  const std::string model = o.model.empty() ? default_model_dir().string() : o.model;
  const std::string source = o.model.empty() ? fmt::format("the default model '{}' (no --model given)", model)
                                             : fmt::format("--model '{}'", model);
  if (!o.json.empty() && o.json != "-") {
    check_not_model_file("--json", o.json, model);
    if (o.file != "-") check_not_input("--json", o.json, "--file", o.file);
    check_output_file("--json", o.json);
  }
  const Input input = read_input(o);
  const Tokenizer tok = Tokenizer::load(model);
  std::vector<int32_t> ids;
  if (o.decode) {
    ids = parse_ids(input.bytes, input.name, tok, source);
  } else {
    warn_if_not_utf8(input.bytes, input.name);
    ids = tok.encode(input.bytes, EncodeOptions{.allow_special = o.special_tokens});
  }

  nlohmann::json tokens = nlohmann::json::array();  // the vocabulary strings, as Hugging Face's convert_ids_to_tokens
  for (const int32_t id : ids) tokens.push_back(tok.id_to_token(id));
  const std::string decoded = o.decode ? tok.decode(ids) : std::string();  // the bytes, exactly
  const bool json_stdout = o.json == "-";
  if (!json_stdout) {
    print_report(stdout, [&] {
      if (o.tokens) {
        // id, the bytes it stands for (quoted, escaped), the vocabulary string; then the count.
        const size_t width = fmt::formatted_size("{}", tok.vocab_size() - 1);
        for (const int32_t id : ids)
          fmt::print("{:>{}}  {}  {}\n", id, width, quoted_token(tok, id),
                     io::escape_for_terminal(tok.id_to_token(id)));
        fmt::print("{}\n", count_noun(static_cast<long long>(ids.size()), "token"));
      } else if (o.decode) {
        (void)std::fwrite(decoded.data(), 1, decoded.size(), stdout);  // (a failure: print_report's fflush)
        if (!o.no_newline) fmt::print("\n");
      } else {
        fmt::print("{}\n", fmt::join(ids, " "));
      }
    });
  }
  if (!o.json.empty()) {
    nlohmann::json j = {{"ids", ids}, {"tokens", tokens}};
    if (o.decode) j["text"] = decoded;  // (json_text writes a byte that is not UTF-8 as U+FFFD)
    if (json_stdout) {
      fmt::print("{}\n", io::json_text(j, 2));
      flush_stdout();
    } else {
      (void)write_json_file(o.json, io::json_text(j, 2) + "\n");
    }
  }
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand(
      "tokenize", "Show the token ids a model's tokenizer gives a text (or, with --decode, the text of token ids)");
  cmd->add_option("--model,-m", opts->model,
                  "Model folder whose tokenizer is used (tokenizer.json, or vocab.json + merges.txt; default: the "
                  "shipped demo model models/gpt2-tiny)")
      ->check(non_empty_path("folder"));
  // The input: TEXT or --file, exactly one (checked in the callback: a usage error, exit status 2). TEXT is
  // the command's own positional, not in an option group, so that "--" before it works as usual.
  // The first positional argument is a std::string option: CLI11 reads an argument "[...]" given to a list
  // option (a std::vector) as its comma-separated items, so a TEXT "[x]" became "x"; a string option takes it
  // as given. Further arguments (--decode's ids as several arguments) go to a hidden list option.
  CLI::Option* text_opt =
      cmd->add_option("TEXT", opts->text,
                      "The text, as one argument (quote it; its bytes as given, any bytes: invalid UTF-8 is encoded "
                      "as the tokenizer encodes any bytes, with a warning); with --decode, the token ids (\"40 5677 "
                      "3017\", \"[40, 5677, 3017]\" or several arguments); '-' reads standard input; a text that "
                      "starts with '-': put -- before it")
          ->type_name("");
  CLI::Option* more_opt = cmd->add_option("IDS", opts->more)->group("");
  CLI::Option* file_opt =
      cmd->add_option("--file,-f", opts->file,
                      "Read the text (with --decode, the ids) from this file instead of TEXT: all its bytes, a final "
                      "newline included; '-' reads standard input. With --decode it may also be the JSON that "
                      "--json writes (its \"ids\" are decoded), and a leading UTF-8 byte-order mark is skipped")
          ->check(non_empty_path("file"))
          ->excludes(text_opt)
          ->excludes(more_opt);
  cmd->add_flag("--tokens", opts->tokens,
                "Print one line per token instead: the id, the bytes it stands for (quoted; newline, tab, quotes, "
                "control bytes and invalid UTF-8 escaped: \\n, \\t, \\\", \\xNN) and its vocabulary string (as "
                "Hugging Face's convert_ids_to_tokens gives it, e.g. \"Ġworld\"), then the number of tokens");
  cmd->add_flag("--decode", opts->decode,
                "The input is token ids: print the text they stand for, byte for byte, then a newline (ids outside "
                "the tokenizer's vocabulary are an error naming the id)");
  cmd->add_flag("--no-newline", opts->no_newline,
                "With --decode: print the text's bytes alone, without the newline after them (so that the output, "
                "written to a file, holds exactly the ids' bytes; encoding it gives the same ids again when they "
                "are the tokenizer's own encoding of a text, with --special-tokens for special tokens, not for any "
                "ids: e.g. \"40 322 317\" spells \"Hello\", which encodes to \"40 5677\")");
  cmd->add_option("--json", opts->json,
                  "Also write {\"ids\": [...], \"tokens\": [...]} (tokens: the vocabulary strings, as --tokens; "
                  "with --decode also \"text\": the decoded text, a byte that is not UTF-8 as U+FFFD) to this file (atomically; missing folders above it are made); '-': the JSON alone on standard "
                  "output; /dev/null: nothing is written")
      ->check(non_empty_path("file"));
  cmd->add_flag(
      "--special-tokens", opts->special_tokens,
      "Also recognize special added tokens such as <|endoftext|> in the text and give their ids (as Hugging Face "
      "tokenizers do); default: they are text, as kq eval and kq bench read them");
  cmd->callback([opts, text_opt, more_opt, file_opt] {
    const bool text_given = text_opt->count() > 0;
    if (!text_given && file_opt->count() == 0)
      throw CLI::ValidationError("no input: give the TEXT, --file FILE, or - to read standard input");
    if (text_given) {
      opts->args = {opts->text};
      opts->args.insert(opts->args.end(), opts->more.begin(), opts->more.end());
    }
    // The arguments after the first are read as a list: CLI11 takes one in [ ] as its comma-separated items.
    if (!opts->decode && more_opt->count() > 0)
      throw CLI::ValidationError(fmt::format(
          "TEXT: {} arguments given; the text is one argument: quote a text with spaces (\"Hello world\")",
          opts->args.size()));
    if (opts->no_newline && !opts->decode)
      throw CLI::ValidationError("--no-newline goes with --decode (the text printed is that of the ids)");
    if (opts->decode && opts->special_tokens)
      throw CLI::ValidationError("--special-tokens goes with encoding a text, not with --decode");
    run_tokenize(*opts);
  });
}

}  // namespace kq::cli

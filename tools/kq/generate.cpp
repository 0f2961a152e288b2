// `kq generate`: stream text from a prompt (greedy or sampled).
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <tuple>
#include <utility>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/generation_config.hpp"
#include "commands.hpp"
#include "diag.hpp"
#include "format_util.hpp"
#include "int_option.hpp"
#include "kq/context.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "model_files.hpp"
#include "path_option.hpp"
#include "real_option.hpp"
#include "threads_option.hpp"
#include "token_text.hpp"

namespace kq::cli {
namespace {

struct GenerateOptions {
  std::string model;
  std::string prompt;
  std::string prompt_file;  ///< --prompt-file: the prompt is this file's text (instead of --prompt)
  int n = 64;
  SamplingParams sampling;
  float repetition_penalty = 1.0f;  ///< --repetition-penalty (1 = off)
  int threads = 0;
  std::string device = "cpu";
  bool ignore_eos = false;
  bool special_tokens = false;
  bool no_echo = false;
  bool no_special_prefix = false;
};

/// The most bytes --prompt-file reads (a file, standard input or a pipe): 16 MiB, far more than any model's
/// context holds (128k tokens are about 0.5 MiB of text); a longer input is an error naming this limit.
constexpr uint64_t kMaxPromptFileBytes = uint64_t(1) << 24;

/// The whole prompt of --prompt-file `path` and how messages name it ("--prompt-file 'x'", or "--prompt-file -
/// (standard input)"): "-" reads standard input to its end, a FIFO (a named pipe, a shell's `<(...)`) is read
/// to its end (a prompt is small and read once), anything else must be a regular file (check_input_file: a
/// folder or a device is InvalidArgument saying what it is). More than kMaxPromptFileBytes is InvalidArgument
/// naming the limit; text that is not UTF-8 is FormatError naming the byte offset.
std::pair<std::string, std::string> read_prompt_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool from_stdin = path == "-";
  if (!from_stdin && fs::status(path, ec).type() != fs::file_type::fifo) {
    check_input_file("--prompt-file", path);
    return {io::read_utf8_text_file(path, kMaxPromptFileBytes), fmt::format("--prompt-file '{}'", path)};
  }
  const std::string name = from_stdin ? "--prompt-file - (standard input)" : fmt::format("--prompt-file '{}'", path);
  std::FILE* f = from_stdin ? stdin : std::fopen(path.c_str(), "rb");
  if (!f) raise<InvalidArgument>("{}: cannot open it: {}", name, std::strerror(errno));
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> close(from_stdin ? nullptr : f, &std::fclose);
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const size_t got = std::fread(buf, 1, sizeof buf, f);
    if (got > kMaxPromptFileBytes - text.size())
      raise<InvalidArgument>("{}: more than {} bytes ({}), the most a prompt may have", name, kMaxPromptFileBytes,
                             human_bytes(size_t(kMaxPromptFileBytes)));
    text.append(buf, got);
    if (got < sizeof buf) break;
  }
  if (std::ferror(f)) raise<Error>("{}: read failed: {}", name, std::strerror(errno));
  io::check_utf8(text, name);
  return {std::move(text), name};
}

/// Positions a KV cache holds beyond the prompt's at first; it grows (grow_cache_for) as tokens are
/// generated, so memory and time follow the tokens generated rather than -n.
constexpr int64_t kCacheChunk = 256;

/// Bytes of the model's KV cache for `positions` (CPU: F32 keys and values of every layer; CUDA: BF16).
double cache_bytes(const Model& model, int64_t positions) {
  const ModelConfig& c = model.config();
  const bool on_cpu = model.context().device == Device::CPU;
  return 2.0 * double(c.num_layers) * double(c.num_kv_heads) * double(c.head_dim) * double(positions) *
         (on_cpu ? sizeof(float) : sizeof(uint16_t));
}

/// The message for a KV cache of `positions` (`what`: which positions those are) that -n `n` asked for and
/// that cannot be had: its size, how it is made up, `why`, and that a smaller -n helps.
std::string cache_too_big(const Model& model, int64_t positions, const std::string& what, int64_t n,
                          const std::string& why) {
  const ModelConfig& c = model.config();
  const bool on_cpu = model.context().device == Device::CPU;
  return fmt::format(
      "-n/--max-new-tokens {}: the KV cache for {} ({}) needs {} ({} layers x {} KV heads x head_dim {} x {} "
      "positions x 2 (keys and values) x {} bytes); {}: give a smaller -n",
      n, count_noun(positions, "position"), what, human_bytes(size_t(std::min(cache_bytes(model, positions), 1e19))),
      c.num_layers, c.num_kv_heads, c.head_dim, positions, on_cpu ? 4 : 2, why);
}

/// On the CPU: InvalidArgument (cache_too_big) for a KV cache of `positions` larger than this machine's
/// memory, before anything is allocated.
void check_cache_fits(const Model& model, int64_t positions, const std::string& what, int64_t n) {
  if (model.context().device != Device::CPU) return;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0 && cache_bytes(model, positions) > double(pages) * double(page))
    raise<InvalidArgument>("{}", cache_too_big(model, positions, what, n,
                                               fmt::format("this machine has {} of memory",
                                                           human_bytes(size_t(pages) * size_t(page)))));
}

/// The model's KV cache for `positions` (`what`: which positions those are, for messages), for generating
/// -n `n` tokens. A cache larger than this machine's memory is an error naming its size and the -n that
/// asked for it, before anything is allocated (check_cache_fits); an allocation that fails all the same
/// (a CUDA device's memory, or memory taken by others) is turned into the same error.
KVCache make_cache_for(const Model& model, int64_t positions, const std::string& what, int64_t n) {
  check_cache_fits(model, positions, what, n);
  const std::string oom = "it could not be allocated (out of memory)";
  try {
    return model.make_cache(positions);
  } catch (const std::bad_alloc&) {
    raise<Error>("{}", cache_too_big(model, positions, what, n, oom));
  } catch (const std::length_error&) {
    raise<Error>("{}", cache_too_big(model, positions, what, n, oom));
  } catch (const Error& e) {
    if (model.context().device == Device::CPU) throw;
    // A device's allocation failing (cudaMalloc: out of memory) is an Error naming the call alone.
    raise<Error>("{}", cache_too_big(model, positions, what, n,
                                     fmt::format("it could not be allocated on the device ({})", e.what())));
  }
}

/// Grows a full KV cache for the next token: to about double its capacity, at most `positions` (all that
/// generating -n `n` tokens takes: cache_positions), the tokens held kept (Model::reserve_cache), so the
/// tokens generated are those of a cache that held `positions` from the start. Errors as make_cache_for.
void grow_cache_for(const Model& model, KVCache& cache, int64_t positions, int64_t n) {
  const int64_t capacity = std::min(positions, 2 * cache.capacity());
  const std::string what = fmt::format("grown from {} for the tokens generated so far; -n takes {} at most",
                                       cache.capacity(), positions);
  check_cache_fits(model, capacity, what, n);
  const std::string oom = "it could not be allocated (out of memory)";
  try {
    model.reserve_cache(cache, capacity);
  } catch (const std::bad_alloc&) {
    raise<Error>("{}", cache_too_big(model, capacity, what, n, oom));
  } catch (const Error& e) {
    if (model.context().device == Device::CPU) throw;
    // A device's allocation failing (cudaMalloc: out of memory) is an Error naming the call alone.
    raise<Error>("{}", cache_too_big(model, capacity, what, n,
                                     fmt::format("it could not be allocated on the device ({})", e.what())));
  }
}

/// Positions of the KV cache that generating `n` tokens after a prompt of
/// `prompt_tokens` takes: the prompt's, and one for each generated token that is
/// fed back to produce the next, i.e. every one but the last (prompt + n - 1
/// for n >= 1; the prompt's for n = 0, when nothing runs).
int64_t cache_positions(int64_t prompt_tokens, int64_t n) { return prompt_tokens + std::max<int64_t>(n - 1, 0); }

/// Which of the options that generation_config.json can also set were given on the command line.
struct GivenOptions {
  bool n = false, temperature = false, top_k = false, top_p = false, repetition_penalty = false;
  std::vector<std::string> sampling;  ///< --top-k, --top-p, --seed as given: warned about at temperature 0
};

/// The settings `kq generate` runs with and, for the summary line, where they came from.
struct ResolvedSettings {
  SamplingParams sampling;
  float repetition_penalty = 1.0f;
  int64_t n = 64;
  bool n_from_file = false;  ///< n is generation_config.json's max_new_tokens
  std::string note;  ///< "; sampling from generation_config.json: ..." or "" when the file set nothing used
};

/// The command line's settings (`o`, `given`) over generation_config.json's (`g`), as Hugging Face
/// transformers' generate() applies GenerationConfig by default
/// (https://huggingface.co/docs/transformers/main_classes/text_generation, GenerationConfig: do_sample
/// defaults to False = greedy decoding, temperature to 1.0, top_k to 50, top_p to 1.0, repetition_penalty
/// to 1.0; temperature / top_k / top_p are used only when sampling):
///  - temperature: --temperature when given; else do_sample true: the file's temperature (1 when absent);
///    else greedy (0), whatever temperature the file sets;
///  - top-k: --top-k; else the file's top_k; else 50 when the file's do_sample is true (transformers'
///    default), else kq's 0 (all tokens);
///  - top-p, repetition penalty: the option, else the file's key, else 1 (off);
///  - -n: the option, else the file's max_new_tokens, else 64.
/// A file without these keys leaves kq's defaults (greedy, -n 64) as they were.
ResolvedSettings resolve_settings(const GenerateOptions& o, const GivenOptions& given, const GenerationDefaults& g) {
  ResolvedSettings r;
  r.sampling = o.sampling;
  r.repetition_penalty = o.repetition_penalty;
  r.n = o.n;
  const bool sample = g.do_sample.value_or(false);
  std::vector<std::string> from_file;  // settings taken from the file, for the note
  std::vector<std::string> from_cli;
  if (!given.temperature) {
    r.sampling.temperature = sample ? g.temperature.value_or(1.0f) : 0.0f;
    if (sample) from_file.push_back(fmt::format("temperature {}{}", r.sampling.temperature,
                                                g.temperature ? "" : " (transformers' default)"));
  } else {
    from_cli.push_back(fmt::format("temperature {} (--temperature)", r.sampling.temperature));
  }
  if (!given.top_k && (g.top_k || sample)) {
    r.sampling.top_k = g.top_k.value_or(50);
    from_file.push_back(fmt::format("top-k {}{}", r.sampling.top_k, g.top_k ? "" : " (transformers' default)"));
  } else if (given.top_k) {
    from_cli.push_back(fmt::format("top-k {} (--top-k)", r.sampling.top_k));
  }
  if (!given.top_p && g.top_p) {
    r.sampling.top_p = *g.top_p;
    from_file.push_back(fmt::format("top-p {}", r.sampling.top_p));
  } else if (given.top_p) {
    from_cli.push_back(fmt::format("top-p {} (--top-p)", r.sampling.top_p));
  }
  std::string penalty;
  if (!given.repetition_penalty && g.repetition_penalty) {
    r.repetition_penalty = *g.repetition_penalty;
    penalty = fmt::format("; repetition penalty {} from generation_config.json", r.repetition_penalty);
  }
  std::string n;
  if (!given.n && g.max_new_tokens) {
    r.n = *g.max_new_tokens;
    r.n_from_file = true;
    n = fmt::format("; -n {} from generation_config.json's max_new_tokens", r.n);
  }
  std::string sampling;
  const bool file_sampling_keys = g.do_sample || g.temperature || g.top_k || g.top_p;
  if (r.sampling.temperature == 0.0f) {
    // Greedy: say so when the file asked for it or set sampling keys that greedy decoding does not use.
    if (!given.temperature && file_sampling_keys)
      sampling = fmt::format("; greedy decoding: generation_config.json {} (its temperature, top_k and top_p "
                             "apply only with do_sample true, as in transformers; --temperature > 0 samples)",
                             g.do_sample ? (sample ? "sets temperature 0" : "sets do_sample false")
                                         : "does not set do_sample");
  } else if (!from_file.empty()) {
    std::string list;
    if (from_cli.empty()) {
      for (const std::string& s : from_file) list += (list.empty() ? "" : ", ") + s;
      sampling = "; sampling from generation_config.json: " + list;
    } else {
      for (const std::string& s : from_cli) list += (list.empty() ? "" : ", ") + s;
      for (const std::string& s : from_file) list += ", " + s + " (generation_config.json)";
      sampling = "; sampling: " + list;
    }
  }
  r.note = sampling + penalty + n;
  return r;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// `given`: the options given on the command line; they override generation_config.json's keys
/// (resolve_settings), and --top-k, --top-p, --seed are warned about as having no effect at temperature 0.
void run_generate(const GenerateOptions& o, const GivenOptions& given) {
  if (o.n < 0) raise<InvalidArgument>("-n must be >= 0, got {}", o.n);
  if (o.threads < 0) raise<InvalidArgument>("--threads must be >= 0 (0 = all cores), got {}", o.threads);
  const ResolvedSettings settings = resolve_settings(o, given, load_generation_defaults(o.model));
  Sampler sampler(settings.sampling);  // validates temperature / top-k / top-p
  const std::vector<std::string>& sampling_given = given.sampling;
  const bool n_given = given.n;
  if (settings.sampling.temperature == 0 && !sampling_given.empty()) {
    std::string names;
    for (size_t i = 0; i < sampling_given.size(); ++i)
      names += (i == 0 ? "" : i + 1 == sampling_given.size() ? " and " : ", ") + sampling_given[i];
    warn(fmt::format("{} {} no effect at --temperature 0 (greedy decoding, the default): give --temperature > 0 "
                     "to sample",
                     names, sampling_given.size() == 1 ? "has" : "have"));
  }
  // The prompt: --prompt, or the whole text of --prompt-file, as it is (a final newline included), checked as
  // kq eval's --text is; `what` names it in messages. Invalid UTF-8 is an error naming the byte offset.
  std::string text = o.prompt;
  std::string what = "--prompt";
  if (!o.prompt_file.empty()) {
    std::tie(text, what) = read_prompt_file(o.prompt_file);
  } else {
    io::check_utf8(text, "--prompt");
  }
  auto model = Model::load(o.model, ExecContext{parse_device(o.device), o.threads});
  // for_model: ids of a padded model vocabulary that the tokenizer lacks decode to nothing.
  // It puts the special prefix before the prompt as Hugging Face does (the summary line says so): no warning
  // about it at load (puts_prompt_prefix; --no-special-prefix is the user's choice).
  const Tokenizer tok = Tokenizer::load(o.model, LoadOptions{.puts_prompt_prefix = true})
                            .for_model(model->config().vocab_size, o.model);
  const int64_t max_pos = model->config().max_positions, vocab = model->config().vocab_size;

  std::vector<int32_t> prompt = tok.encode(text, EncodeOptions{.allow_special = o.special_tokens});
  // The echo is the text the model sees: the prompt's tokens decoded (a tokenizer's normalizer may have changed
  // it, e.g. NFKC's "ﬁ" -> "fi"), not --prompt as given; the special prefix and a BOS for an empty prompt are not.
  const std::string echo = tok.decode(prompt);
  // The special tokens Hugging Face puts before every text (Llama-2's "<s>", Llama-3's
  // "<|begin_of_text|>") go before the prompt, as transformers' tokenizer(prompt) gives them, unless
  // --no-special-prefix; those after the text (an EOS) do not: generation continues the text. The
  // summary line on stderr says so. An empty prompt is then the prefix alone (no second BOS).
  std::string prompt_note;
  size_t prefix_added = 0;  // tokens of the special prefix put before the text, for the too-long error
  if (const std::vector<int32_t>& prefix = tok.prompt_prefix(); !o.no_special_prefix && !prefix.empty()) {
    prefix_added = prefix.size();
    std::string which;
    for (const int32_t id : prefix)
      which += fmt::format("{}{} {}", which.empty() ? "" : ", ", id, quoted_token(tok, id));
    prompt.insert(prompt.begin(), prefix.begin(), prefix.end());
    prompt_note = fmt::format(" (with the tokenizer's special {} {} before the {}, as Hugging Face adds {}; "
                              "--no-special-prefix omits {})",
                              prefix.size() == 1 ? "token" : "tokens", which,
                              text.empty() ? "empty " + what : "text", prefix.size() == 1 ? "it" : "them",
                              prefix.size() == 1 ? "it" : "them");
  }
  // An empty prompt (without a prefix) starts from the BOS token (as transformers' generate does
  // without input ids); the summary line on stderr says so.
  if (prompt.empty()) {
    const auto bos = tok.bos_token_id();
    if (!bos) raise<InvalidArgument>("empty {} and the tokenizer has no BOS token to start from", what);
    prompt.push_back(*bos);
    prompt_note = fmt::format(" (empty {}: the BOS token {} {})", what, *bos, quoted_token(tok, *bos));
  }
  if (int64_t(prompt.size()) > max_pos) {
    // Say when the tokenizer's prefix (a BOS) is what makes it too long, and that --no-special-prefix omits it.
    std::string added;
    if (prefix_added > 0)
      added = fmt::format(" ({} of them the tokenizer's special prefix{} added before the text; {})", prefix_added,
                          prefix_added == 1 ? "" : " tokens",
                          int64_t(prompt.size() - prefix_added) <= max_pos
                              ? "--no-special-prefix omits it, and the text's own tokens fit"
                              : "the text's own tokens do not fit either");
    raise<InvalidArgument>("{} has {} tokens{}; the model's context is {} (at most {} prompt {})", what,
                           prompt.size(), added, count_noun(max_pos, "position"), max_pos,
                           max_pos == 1 ? "token" : "tokens");
  }
  // Generation stops at an end-of-sequence token: eos_token_id of
  // generation_config.json, else config.json (an int or a list), else the
  // tokenizer's EOS token; --ignore-eos keeps going. The EOS token is not printed.
  EosTokens eos = load_eos_token_ids(o.model, vocab);
  if (eos.source.empty())
    if (const auto t = tok.eos_token_id()) eos.ids = {*t};
  auto is_eos = [&](int32_t t) { return std::find(eos.ids.begin(), eos.ids.end(), t) != eos.ids.end(); };
  // -n is a maximum (generation also stops at the end-of-sequence token): one that
  // does not fit the context (cache_positions) is reduced to what fits, and said so on stderr.
  int64_t n = settings.n;
  if (cache_positions(int64_t(prompt.size()), n) > max_pos) {
    n = max_pos - int64_t(prompt.size()) + 1;
    warn(fmt::format(
        "-n/--max-new-tokens: generating at most {} instead of the {}{}: the prompt's {} "
        "{} {} of the model's {} (the last generated token needs none)",
        count_noun(n, "token"), n_given               ? "requested "
        : settings.n_from_file ? "generation_config.json's max_new_tokens "
                               : "default ",
        settings.n,
        count_noun((long long)prompt.size(), "token"), prompt.size() == 1 ? "leaves" : "leave",
        max_pos - int64_t(prompt.size()), count_noun(max_pos, "position")));
  }

  // The KV cache starts with the prompt's positions and kCacheChunk more, and doubles as tokens are generated
  // (grow_cache_for; on CUDA a decode graph is captured for each capacity, a few in all).
  const int64_t positions = cache_positions(int64_t(prompt.size()), n);
  const int64_t first = std::min(positions, int64_t(prompt.size()) + kCacheChunk);
  KVCache cache = make_cache_for(*model, first, first == positions ? "the prompt and the -n tokens but the last"
                                                                   : "the prompt and the first tokens generated",
                                 n);
  std::vector<float> logits(static_cast<size_t>(vocab));
  StreamDecoder out(tok, StreamDecoder::InvalidBytes::Replace);  // stdout gets valid UTF-8 only
  if (!o.no_echo) {
    fmt::print("{}", echo);
    flush_stdout();
  }

  // Prefill the prompt, then decode one token at a time. An error on the way
  // (e.g. a non-finite logit) ends the text streamed so far with a newline, so
  // the message on stderr does not run on after it on a terminal.
  const auto t0 = std::chrono::steady_clock::now();
  int64_t generated = 0;
  std::optional<int32_t> stopped_at;  // the EOS token that ended generation
  double prefill_s = 0;
  std::chrono::steady_clock::time_point t1;
  try {
    // The sequence so far (the prompt, then each token generated): what longrope's recomputation runs again.
    std::vector<int32_t> sequence = prompt;
    if (n > 0) model->forward(prompt, cache, logits.data(), /*all_logits=*/false);
    prefill_s = since(t0);
    t1 = std::chrono::steady_clock::now();
    for (; generated < n; ++generated) {
      // The repetition penalty over the prompt and the tokens generated so far (`sequence`), before sampling.
      if (settings.repetition_penalty != 1.0f) apply_repetition_penalty(logits, sequence, settings.repetition_penalty);
      const int32_t next = sampler.sample(logits);
      if (!o.ignore_eos && is_eos(next)) {
        stopped_at = next;
        break;
      }
      fmt::print("{}", out.push(next));
      flush_stdout();
      if (generated + 1 < n) {
        if (cache.size() == cache.capacity()) grow_cache_for(*model, cache, positions, n);
        sequence.push_back(next);
        if (longrope_recomputes_cache(model->config(), cache.size())) {
          // Phi-3's longrope crossing original_max_position_embeddings: transformers' generate() drops the
          // cache here and runs the whole sequence again with the long factors; so does kq.
          cache.reset();
          model->forward(sequence, cache, logits.data(), /*all_logits=*/false);
        } else {
          model->forward(std::span(&next, 1), cache, logits.data());
        }
      }
    }
  } catch (const kq::Error&) {
    if (!o.no_echo || generated > 0) {
      (void)std::fputs("\n", stdout);
      (void)std::fflush(stdout);
    }
    throw;
  }
  fmt::print("{}\n", out.flush());
  flush_stdout();
  const double decode_s = since(t1);
  check_model_files_unchanged("the text generated above may not be the model's");
  if (n == 0) {  // nothing ran: no rates to report
    print_diag("kq: prompt {}{}; -n 0: nothing generated{}\n", count_noun((long long)prompt.size(), "token"),
               prompt_note, settings.note);
    return;
  }
  print_diag(
      "kq: prompt {}{}, prefill {:.1f} ms ({:.0f} tokens/s); generated {}{}{}{}\n",
      count_noun((long long)prompt.size(), "token"), prompt_note, prefill_s * 1e3,
      prefill_s > 0 ? double(prompt.size()) / prefill_s : 0.0, count_noun(generated, "token"),
      // No rate for no token (an end-of-sequence token first): "0 tokens, 0.0 tokens/s" says nothing.
      generated > 0 ? fmt::format(", {:.1f} tokens/s", decode_s > 0 ? double(generated) / decode_s : 0.0)
                    : std::string(),
      stopped_at
          ? fmt::format("; stopped at end-of-sequence token {} ({})", *stopped_at, quoted_token(tok, *stopped_at))
          : std::string(),
      settings.note);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto opts = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt, streamed as it is produced");
  cmd->add_option("--model,-m", opts->model, "Model folder (config.json, safetensors, tokenizer): a Hugging Face checkpoint, a kq "
                  "quantize folder, or an AutoAWQ / AutoGPTQ / bitsandbytes quantized checkpoint")
      ->required()
      ->check(non_empty_path("folder"));
  // One of --prompt and --prompt-file: checked while the command line is parsed (a usage error, exit status 2,
  // before anything runs).
  CLI::Option_group* prompt_group = cmd->add_option_group("Prompt", "The text generation continues: one of the two options below");
  CLI::Option* prompt_opt = prompt_group->add_option(
      "--prompt", opts->prompt,
      "Prompt text (UTF-8; invalid UTF-8 is an error naming the byte offset)");
  prompt_group
      ->add_option("--prompt-file", opts->prompt_file,
                   "Read the prompt from this UTF-8 text file instead (all of it, a final newline included; at "
                   "most 16 MiB; invalid UTF-8 is an error naming the byte offset); '-' reads standard input, "
                   "and a pipe (e.g. <(...)) is read to its end too")
      ->check(non_empty_path("file"))
      ->excludes(prompt_opt);
  prompt_group->require_option(1);
  CLI::Option* n_opt =
      cmd->add_option(
             "-n,--max-new-tokens", opts->n,
             "Tokens to generate at most (reduced, with a warning, to what the model's context leaves); default: "
             "generation_config.json's max_new_tokens when it sets one, else 64")
          ->transform(integer_in(0, 1 << 30))
          ->capture_default_str();
  CLI::Option* temperature_opt = cmd->add_option(
      "--temperature", opts->sampling.temperature,
      "Sampling temperature; 0 = greedy (--top-k, --top-p and --seed then have no effect); default: greedy, "
      "unless generation_config.json sets do_sample true: then its temperature (1 when absent), as transformers "
      "does")
      // The upper bound is the largest float (the temperature is a float), so
      // that a value beyond it names the real limit rather than "inf".
      ->check(real_in<float>({0.0, double(std::numeric_limits<float>::max())}))
      ->capture_default_str();
  CLI::Option* top_k_opt =
      cmd->add_option("--top-k", opts->sampling.top_k,
                      "Sample from the k most likely tokens (0 = all); default: generation_config.json's top_k, "
                      "else 50 when it sets do_sample true (transformers' default), else 0")
      ->transform(integer_in(0, std::numeric_limits<int>::max()))
      ->capture_default_str();
  CLI::Option* top_p_opt =
      cmd->add_option("--top-p", opts->sampling.top_p,
                      "Nucleus sampling probability mass (1 = off); default: generation_config.json's top_p, else 1")
      ->check(real_in<float>({.lo = 0.0, .hi = 1.0, .lo_open = true}))
      ->capture_default_str();
  CLI::Option* seed_opt =
      cmd->add_option("--seed", opts->sampling.seed, "Random seed (of std::mt19937_64)")
      ->transform(integer_in<uint64_t>(0, std::numeric_limits<uint64_t>::max()))
      ->capture_default_str();
  CLI::Option* penalty_opt =
      cmd->add_option("--repetition-penalty", opts->repetition_penalty,
                      "Repetition penalty (CTRL, as transformers applies it): the logit of every token already in "
                      "the prompt or the text generated is divided by it when positive, multiplied when negative; "
                      "1 = off, > 1 discourages repeats; default: generation_config.json's repetition_penalty, "
                      "else 1")
          ->check(real_in<float>({.lo = 0.0, .hi = double(std::numeric_limits<float>::max()), .lo_open = true}))
          ->capture_default_str();
  add_threads_option(cmd, opts->threads);
  cmd->add_option("--device", opts->device, "cpu or cuda (the GPU, see docs/GPU.md)")
      ->check(CLI::IsMember({"cpu", "cuda", "gpu"}, CLI::ignore_case))
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", opts->ignore_eos,
                "Keep generating after an end-of-sequence token (default: stop there, without printing it; "
                "the ids are eos_token_id of generation_config.json, else config.json, else the tokenizer's "
                "EOS token)");
  cmd->add_flag("--special-tokens", opts->special_tokens,
                "Also recognize special added tokens such as <|endoftext|> in the prompt and emit their ids (as "
                "Hugging Face tokenizers do); default: they are text (added tokens that are not special are always "
                "recognized)");
  cmd->add_flag("--no-echo", opts->no_echo,
                "Do not print the prompt before the generated text (default: it is printed as the model sees it, "
                "its tokens decoded: a tokenizer's normalizer, e.g. NFKC, may have changed it)");
  cmd->add_flag("--no-special-prefix", opts->no_special_prefix,
                "Do not put the special tokens the tokenizer adds before every text (e.g. Llama's BOS, from "
                "tokenizer.json's post_processor or add_bos_token) before the prompt (default: they are put there, "
                "as Hugging Face tokenizers do; tokens after the text, e.g. an EOS, never are)");
  cmd->callback([opts, n_opt, temperature_opt, top_k_opt, top_p_opt, seed_opt, penalty_opt] {
    GivenOptions given{.n = n_opt->count() > 0,
                       .temperature = temperature_opt->count() > 0,
                       .top_k = top_k_opt->count() > 0,
                       .top_p = top_p_opt->count() > 0,
                       .repetition_penalty = penalty_opt->count() > 0};
    for (const CLI::Option* opt : {top_k_opt, top_p_opt, seed_opt})
      if (opt->count() > 0) given.sampling.push_back(opt->get_name());
    run_generate(*opts, given);
  });
}

}  // namespace kq::cli

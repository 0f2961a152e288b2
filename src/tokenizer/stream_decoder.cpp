// StreamDecoder: emits only complete UTF-8 from a stream of token bytes.
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace kq {

namespace {
StreamDecoder::InvalidBytes checked(StreamDecoder::InvalidBytes mode) {
  if (mode != StreamDecoder::InvalidBytes::Keep && mode != StreamDecoder::InvalidBytes::Replace)
    raise<InvalidArgument>("StreamDecoder: mode {} is not an InvalidBytes value (Keep or Replace)", int(mode));
  return mode;
}
}  // namespace

StreamDecoder::StreamDecoder(InvalidBytes mode) : mode_(checked(mode)) {}

StreamDecoder::StreamDecoder(const Tokenizer& tok, InvalidBytes mode) : tok_(&tok), mode_(checked(mode)) {}

std::string StreamDecoder::push(int32_t id) {
  if (!tok_) raise<InvalidArgument>("StreamDecoder::push({}): decoder was constructed without a tokenizer", id);
  return push_bytes(tok_->decode_token(id));
}

std::string StreamDecoder::push_bytes(std::string_view bytes) {
  buf_.append(bytes);
  const size_t hold = tok::incomplete_utf8_tail(buf_);
  std::string out = buf_.substr(0, buf_.size() - hold);
  buf_.erase(0, buf_.size() - hold);
  return mode_ == InvalidBytes::Replace ? tok::replace_invalid_utf8(out) : out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(buf_);
  return mode_ == InvalidBytes::Replace ? tok::replace_invalid_utf8(out) : out;
}

}  // namespace kq

#pragma once
// Non-fatal problems the library notices while it works (tensors in a weights
// file that the architecture does not use, a --keep pattern that matches no
// layer, an option reduced to fit the model's context, ...). They are handed
// to one process-wide handler instead of being printed from deep library
// code: the CLI prints them on stderr, a program embedding the library may
// log, collect or ignore them.
#include <functional>
#include <string>

namespace kq {

/// Receives one warning: a complete sentence without a trailing newline that
/// names the file, tensor or option concerned.
using WarningHandler = std::function<void(const std::string& message)>;

/// Installs `handler` for every later warn() call of the process and returns
/// the previous handler. An empty handler restores the default, which writes
/// "kq: warning: <message>" and a newline to stderr. Thread-safe; the handler
/// itself may be called from any thread (one call at a time) and must not
/// call warn() or set_warning_handler() itself.
WarningHandler set_warning_handler(WarningHandler handler);

/// Hands `message` to the current handler. Never throws (an exception thrown
/// by a handler is swallowed: a warning must not turn into an error).
void warn(const std::string& message);

}  // namespace kq

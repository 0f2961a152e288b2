#pragma once
// A progress indicator on stderr for long CLI runs: a redrawn bar
// "\r[#####     ] 12/754 windows  8 s, ETA 40 s" when stderr is a terminal, else
// (logs, CI) one plain line at most every 15 s once a run has lasted 15 s.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "diag.hpp"

namespace kq::cli {

/// Whether a progress bar's line is on the terminal unfinished (the cursor at
/// its end); one for the process (one bar is drawn at a time).
inline bool& progress_line_open() noexcept {
  static bool open = false;
  return open;
}

/// Ends an unfinished progress bar's line, so that the diagnostic printed next
/// (a library warning handed to main.cpp's handler while a bar is drawn)
/// starts on its own line; the bar is drawn again below it at its next update.
/// Nothing when no bar's line is open.
inline void end_progress_line() noexcept {
  if (std::exchange(progress_line_open(), false)) print_diag("\n");
}

class Progress {
 public:
  /// `unit` names what is counted ("windows"). `enabled` = false silences it.
  explicit Progress(std::string unit, bool enabled = true)
      : unit_(std::move(unit)),
        enabled_(enabled),
        tty_(::isatty(STDERR_FILENO) == 1),
        start_(Clock::now()),
        last_(start_) {}
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() { finish(); }

  /// Reports `done` of `total` units.
  void update(int64_t done, int64_t total) {
    if (!enabled_ || total <= 0) return;
    const auto now = Clock::now();
    const double elapsed = seconds(now - start_);
    const double eta = done > 0 ? elapsed * double(total - done) / double(done) : 0.0;
    if (tty_) {
      if (done < total && seconds(now - last_) < 0.1) return;  // redraw at most 10×/s
      constexpr int kWidth = 30;
      const int filled = int(kWidth * done / total);
      print_diag("\r[{}{}] {}/{} {}  {:.0f} s, ETA {:.0f} s ", std::string(size_t(filled), '#'),
                 std::string(size_t(kWidth - filled), ' '), done, total, unit_, elapsed, eta);
      drawn_ = true;
      progress_line_open() = true;
    } else {
      if (elapsed < 15.0 || seconds(now - last_) < 15.0) return;
      print_diag("{}/{} {} ({:.0f} s, ETA {:.0f} s)\n", done, total, unit_, elapsed, eta);
    }
    last_ = now;
  }

  /// Ends the bar's line (idempotent).
  void finish() {
    if (drawn_) end_progress_line();  // (already ended when a warning was printed since the last redraw)
    drawn_ = false;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
  std::string unit_;
  bool enabled_;
  bool tty_;
  bool drawn_ = false;
  Clock::time_point start_, last_;
};

}  // namespace kq::cli

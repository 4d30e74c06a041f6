// A one-line progress display on stderr: phase, step, loss, accuracy, expected latency, ETA.
// On a terminal the line is redrawn in place; otherwise a line is printed every `interval_s`.
// Not thread-safe.
#pragma once

#include <chrono>
#include <string>

namespace nas {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled, double interval_s = 15.0);
  // Starts a phase of `total` steps.
  void Start(const std::string& phase, int64_t total);
  // `detail`: free text after the counters (e.g. "loss 0.41 acc 86.2% E[lat] 1.92ms").
  void Update(int64_t step, const std::string& detail);
  // Ends the phase with a final line.
  void Finish(const std::string& detail);
  // Prints a message on its own line (also when the bar is disabled).
  void Log(const std::string& message);

 private:
  void Draw(bool final_line);

  bool enabled_, tty_;
  double interval_s_;
  std::string phase_, detail_;
  int64_t total_ = 0, step_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string FormatDuration(double seconds);

}  // namespace nas

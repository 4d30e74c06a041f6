#include "worker/progress.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace nas {

std::string FormatDuration(double s) {
  if (s < 0) s = 0;
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

ProgressBar::ProgressBar(bool enabled, double interval_s)
    : enabled_(enabled), tty_(isatty(2) != 0), interval_s_(interval_s) {}

void ProgressBar::Start(const std::string& phase, int64_t total) {
  phase_ = phase;
  total_ = total;
  step_ = 0;
  detail_.clear();
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void ProgressBar::Update(int64_t step, const std::string& detail) {
  step_ = step;
  detail_ = detail;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.2 : interval_s_)) {
    last_draw_ = now;
    Draw(false);
  }
}

void ProgressBar::Finish(const std::string& detail) {
  step_ = total_;
  detail_ = detail;
  Draw(true);
}

void ProgressBar::Log(const std::string& message) {
  if (enabled_ && tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
}

void ProgressBar::Draw(bool final_line) {
  if (!enabled_) return;
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double frac = total_ > 0 ? static_cast<double>(step_) / total_ : 1.0;
  double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
  constexpr int kWidth = 24;
  int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  std::string line = absl::StrFormat("%-8s [%s] %3d%% %d/%d %s  %s %s", phase_, bar,
                                     static_cast<int>(frac * 100), step_, total_, detail_,
                                     final_line ? "took" : "ETA",
                                     FormatDuration(final_line ? elapsed : eta));
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace nas

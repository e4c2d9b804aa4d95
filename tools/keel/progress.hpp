// keel tool: the progress bar of export, import, verify and migrate.
#pragma once

#include <chrono>
#include <cstdio>
#include <keel/dump.hpp>
#include <string>

namespace keel_tool {

// A progress bar on stderr, redrawn at most 10 times a second; silent when
// disabled (stderr not a terminal, or --no-progress).
class progress_bar {
 public:
  progress_bar(bool enabled, std::string label) : enabled_(enabled), label_(std::move(label)) {}
  ~progress_bar() { done(); }
  void update(const keel::progress_info& p) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    double secs = std::chrono::duration<double>(now - start_).count();
    char line[256];
    if (p.total_bytes > 0 && p.bytes <= p.total_bytes) {
      double f = static_cast<double>(p.bytes) / static_cast<double>(p.total_bytes);
      int filled = static_cast<int>(f * 30);
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(30, '.');
      std::snprintf(line, sizeof line, "\r%s [%s] %3d%%  %llu records", label_.c_str(), bar.c_str(),
                    static_cast<int>(f * 100), static_cast<unsigned long long>(p.records));
    } else {
      std::snprintf(line, sizeof line, "\r%s %llu records, %.1f MB, %.1f s", label_.c_str(),
                    static_cast<unsigned long long>(p.records), static_cast<double>(p.bytes) / 1e6, secs);
    }
    std::fputs(line, stderr);
    std::fflush(stderr);
  }
  void done() {
    if (enabled_ && drawn_) std::fputs("\r\033[K", stderr);
    drawn_ = false;
  }
  keel::progress_fn fn() {
    return [this](const keel::progress_info& p) { update(p); };
  }

 private:
  bool enabled_;
  std::string label_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_{};
};

}  // namespace keel_tool

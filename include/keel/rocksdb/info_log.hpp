// keel::detail (RocksDB backend): the info log keel gives RocksDB (rocksdb::Options::info_log).
//
// Why: RocksDB's own info log (PosixLogger, Debian's 7.8.3 built with
// assertions on) aborts the process on the line after one failed append
// (assertion `sync_without_flush_called_`). On a full disk the first failed
// write logs its background error, so the process died instead of getting
// errc::no_space. This logger writes the same file, `<db>/LOG`, but a line it
// cannot write (a full disk, an I/O error) is dropped and the next line is
// tried again: logging never fails and never stops the process.
//
// The file: at open the previous `LOG` is renamed to `LOG.old.<microseconds>`
// (RocksDB's own naming, so RocksDB still prunes old logs to
// keep_log_file_num), then `LOG` is created and appended to, unbuffered, one
// write per line ("YYYY/MM/DD-HH:MM:SS.uuuuuu <thread> <text>"). If the file
// cannot be created (a full disk), every line is dropped. Lines of a level
// below the logger's (InfoLogLevel::INFO_LEVEL by default) are skipped, as by
// every rocksdb::Logger.
//
// Thread safety: Logv may be called from any thread (RocksDB's background
// threads do); lines are written under a mutex, whole.
#pragma once

#include <rocksdb/env.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

namespace keel::detail {

class rocks_info_log : public rocksdb::Logger {
 public:
  // Opens `<dir>/LOG` as described above. Never throws on I/O failures.
  explicit rocks_info_log(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    const fs::path log = dir / "LOG";
    std::error_code ec;
    if (fs::exists(log, ec)) {
      const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      fs::rename(log, dir / ("LOG.old." + std::to_string(micros)), ec);
    }
    file_ = std::fopen(log.string().c_str(), "ab");
    if (file_ != nullptr) std::setvbuf(file_, nullptr, _IONBF, 0);
  }
  rocks_info_log(const rocks_info_log&) = delete;
  rocks_info_log& operator=(const rocks_info_log&) = delete;
  ~rocks_info_log() override {
    if (file_ != nullptr) std::fclose(file_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char text[1024];
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(text, sizeof text, format, copy);
    va_end(copy);
    if (n < 0) return;
    std::string line = stamp();
    line.append(text, static_cast<std::size_t>(n) < sizeof text ? static_cast<std::size_t>(n) : sizeof text - 1);
    if (line.empty() || line.back() != '\n') line += '\n';
    std::lock_guard lock(mutex_);
    if (file_ == nullptr) return;
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size()) {
      ++dropped_;
      std::clearerr(file_);  // a full disk: the line is dropped, the next one is tried
    }
  }

  // Lines that could not be written (for tests).
  std::size_t dropped_lines() const {
    std::lock_guard lock(mutex_);
    return dropped_;
  }
  // Whether `<dir>/LOG` could be opened at all.
  bool has_file() const noexcept { return file_ != nullptr; }

 private:
  static std::string stamp() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
    std::tm tm{};
#if defined(_WIN32)
    localtime_s(&tm, &secs);
#else
    localtime_r(&secs, &tm);
#endif
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d/%02d/%02d-%02d:%02d:%02d.%06lld %zx ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(micros),
                  std::hash<std::thread::id>{}(std::this_thread::get_id()));
    return buf;
  }

  mutable std::mutex mutex_;
  std::FILE* file_ = nullptr;  // guarded by mutex_ for writes; null: every line is dropped
  std::size_t dropped_ = 0;    // guarded by mutex_
};

}  // namespace keel::detail

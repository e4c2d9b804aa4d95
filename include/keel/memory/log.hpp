// keel/memory/log.hpp - the write-ahead log of a persisted memory store
// (memory_options::persist_path). Needs no RocksDB headers.
//
// Files, for a store persisted at FILE (docs/durability.md):
//   FILE             the snapshot: a dump (docs/dump-format.md) of the store as
//                    of the last fold
//   FILE.wal-<gen>   logs: every acknowledged write since the snapshot, one
//                    checksummed frame per write or batch; gen = 12 decimal digits
//   FILE.lock        the lock (fcntl; LockFileEx on Windows) that keeps one process
//                    per file; never deleted
//
// Open: lock, load the snapshot, replay the logs in gen order, then append to
// a new log (gen = the highest + 1). Fold (flush(), close(), or a log past its
// threshold): rotate to a new log under the writers' mutex, write the store as
// of the rotation to a new snapshot (temporary file, fsync, rename, directory
// fsync), then remove the older logs. Replaying a log whose writes the
// snapshot already holds changes nothing (each key ends as the last write to
// it in the log left it), so a crash between the rename and the removal is
// harmless.
//
// Replay: damage in the newest log past the point it is known synced (a torn
// tail, or pages of an unsynced tail that reached the disk out of order: whole
// frames, zeros, more whole frames) is a lost tail: it and everything after it
// are dropped and cut off the file (those writes were never synced, so no
// sync_writes write is lost). How far a log is known synced: every frame
// records the highest sequence number synced before it was written, so damage
// at sequence number E followed by a valid frame that says E was synced is
// damage of synced data, as is damage in an older log (a log is synced whole
// before a newer one is created): both refuse the open with errc::corruption
// naming the file and the offset, never a silently shorter store. Logs of
// version 1 (no such record) keep the old rule: damage followed by any valid
// frame is corruption.
//
// Appends (Linux): the current log is mapped (log_io::mapping) and an append
// is a memcpy into space reserved with posix_fallocate: no system call per
// write (a 120-byte write() costs ~1.6 us on the machines measured, the copy
// ~0.3 us with its page faults), and a process crash keeps it as it keeps a
// write() (the pages are the kernel's page cache; fdatasync writes them).
// While a log is open its file is longer than its frames: the rest is
// zeros, which replay reads as the end of the log (in any log: the sequence
// numbers across logs still catch a lost tail). Seal and rotate cut the
// file to its frames. Elsewhere, with sync_writes (a sync per write costs
// far more than the call, and writeback would fault the mapped pages again),
// and where mapping fails: one write() per frame.
//
// The file calls go through detail::file (platform_file.hpp: one POSIX and one
// Windows branch); namespace log_io holds the log's uses of it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../detail/encoding.hpp"  // crc32c, put_u32/u64, varints
#include "../detail/file_lock.hpp"
#include "../detail/platform_file.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "log_format.hpp"

#if defined(__linux__)
#include <fcntl.h>
#include <sys/mman.h>
#endif

namespace keel::detail {

// ---------------------------------------------------------------------------
// log_io: every system call the log makes.
// ---------------------------------------------------------------------------
namespace log_io {

// Test seam: when set, called instead of fdatasync() on the log (and on the
// new log's header, and on a cut torn tail). Return -1 with errno set to
// inject a failure. Process-wide; set it only while no persisted store is
// syncing. Takes the native handle (an int descriptor on POSIX, a HANDLE on
// Windows, where any failure it returns is reported as ERROR_WRITE_FAULT).
inline std::atomic<int (*)(native_handle)>& sync_hook() {
  static std::atomic<int (*)(native_handle)> hook{nullptr};
  return hook;
}

// Makes the file's data durable (file::sync_data: fdatasync on Linux,
// F_FULLFSYNC on Apple, FlushFileBuffers on Windows), or the hook's result.
inline sys_error sync_data(native_handle h) noexcept {
  if (auto hook = sync_hook().load()) {
    if (hook(h) == 0) return {};
#if defined(_WIN32)
    return sys_error{ERROR_WRITE_FAULT};  // an io_error, as EIO is on POSIX
#else
    return sys_error{static_cast<unsigned long>(errno ? errno : EIO)};
#endif
  }
  return file::sync_data(h);
}

// Creates `path` (it must not exist) for appending.
inline result<file> create(const std::filesystem::path& path) {
  file f;
  bool exists = false;
  if (auto e = f.create_new(path, exists)) return os_error(e, "cannot create '" + path_text(path) + "'");
  return f;
}

// Cuts the file at `path` to `size` bytes and syncs it.
inline result<void> truncate_path(const std::filesystem::path& path, std::uint64_t size) {
  file f;
  if (auto e = f.open_read_write(path)) return os_error(e, "cannot open '" + path_text(path) + "' to cut its torn tail");
  sys_error e = f.truncate(size);
  if (!e) e = sync_data(f.native());
  if (e) return os_error(e, "cannot cut the torn tail of '" + path_text(path) + "'");
  return {};
}

// The whole file.
inline result<std::string> read_all(const std::filesystem::path& path) {
  file f;
  if (auto e = f.open_read(path)) return os_error(e, "cannot open '" + path_text(path) + "'");
  std::string out;
  std::vector<char> buf(std::size_t{1} << 16);
  for (;;) {
    std::size_t got = 0;
    if (auto e = f.read_some(buf.data(), buf.size(), got)) return os_error(e, "cannot read '" + path_text(path) + "'");
    if (got == 0) break;
    out.append(buf.data(), got);
  }
  return out;
}

// The writable mapping of a log file from offset 0 (Linux; elsewhere
// reserve() always fails and the log writes instead). reserve(fd, need)
// makes [0, need) mapped and backed by allocated blocks (posix_fallocate, so
// a full disk is an error here, never a SIGBUS later), growing by doubling
// from 1 MiB. Not thread-safe: the log's appends are serialised.
class mapping {
 public:
  mapping() = default;
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  ~mapping() { unmap(); }

  sys_error reserve([[maybe_unused]] native_handle fd, [[maybe_unused]] std::uint64_t need) noexcept {
#if defined(__linux__)
    if (need <= size_) return {};
    std::uint64_t grown = size_ ? size_ : std::uint64_t{1} << 20;
    while (grown < need) grown *= 2;
    if (const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(grown)); rc != 0)
      return sys_error{static_cast<unsigned long>(rc)};
    void* p = base_ ? ::mremap(base_, size_, grown, MREMAP_MAYMOVE)
                    : ::mmap(nullptr, grown, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      return sys_error{static_cast<unsigned long>(e ? e : ENOMEM)};
    }
    base_ = static_cast<char*>(p);
    size_ = grown;
    return {};
#else
    return sys_error{static_cast<unsigned long>(ENOSYS)};
#endif
  }
  char* data() const noexcept { return base_; }
  std::uint64_t size() const noexcept { return size_; }
  void unmap() noexcept {
#if defined(__linux__)
    if (base_) ::munmap(base_, size_);
#endif
    base_ = nullptr;
    size_ = 0;
  }

 private:
  char* base_ = nullptr;
  std::uint64_t size_ = 0;
};

}  // namespace log_io

// The frame starting at bytes[pos], if it is whole and valid: payload and sequence.
struct log_frame_view {
  std::string_view payload;
  std::uint64_t seq = 0;
  std::size_t size = 0;     // header + payload
  std::uint64_t synced = 0;  // version 2: highest sequence number synced before it; version 1: 0
};
// `version` is the log file's (1 or 2).
inline std::optional<log_frame_view> parse_log_frame(std::string_view bytes, std::size_t pos,
                                                     std::uint32_t version = log_version) {
  const bool v1 = version == 1;
  const std::size_t header = v1 ? log_frame_header_size_v1 : log_frame_header_size;
  if (pos > bytes.size() || bytes.size() - pos < header) return std::nullopt;
  const char* h = bytes.data() + pos;
  if (get_u32(h) != (v1 ? log_frame_magic_v1 : log_frame_magic)) return std::nullopt;
  if (get_u32(h + header - 4) != crc32c_extend(0, h, header - 4)) return std::nullopt;
  const std::uint32_t len = get_u32(h + 4);
  if (len > bytes.size() - pos - header) return std::nullopt;
  std::string_view payload = bytes.substr(pos + header, len);
  if (get_u32(h + header - 8) != crc32c(payload)) return std::nullopt;
  if (!decode_log_payload(payload, [](const log_op&) {})) return std::nullopt;
  return log_frame_view{payload, get_u64(h + 8), header + len, v1 ? 0 : get_u64(h + 16)};
}

// ---------------------------------------------------------------------------
// memory_log: the log of one persisted memory store.
//
// Thread safety: append(), rotate() and seal() are called with the store's
// writer mutex held (one at a time); sync_through() without it, from any
// thread (group commit: concurrent callers share one fdatasync).
// After a failed sync the log is failed for good: every later append and
// sync returns the error (an fsync is never retried: the kernel may have
// dropped the pages it could not write, so a retry could succeed without
// the data).
// ---------------------------------------------------------------------------
class memory_log {
 public:
  memory_log(const memory_log&) = delete;
  memory_log& operator=(const memory_log&) = delete;
  ~memory_log() = default;

  // Locks the store's file (see file_lock). Nothing is read yet.
  static result<std::unique_ptr<memory_log>> lock(const std::filesystem::path& file, bool sync_writes) {
    auto l = file_lock::acquire(suffixed(file, ".lock"), file);
    if (!l) return l.error();
    std::unique_ptr<memory_log> log(new memory_log(file, sync_writes));
    log->lock_ = std::move(*l);
    return log;
  }

  // What replay() found.
  struct replay_info {
    std::uint64_t logs = 0, frames = 0, ops = 0;
    std::uint64_t torn_bytes = 0;  // cut off the end of the newest log
  };

  // Calls apply(const log_op&[, frame seq]) for every op of every log, in order. Checks
  // everything before the newest log's torn tail (remembered; start() cuts it).
  template <class Apply>
  result<replay_info> replay(Apply&& apply) {
    replay_info info;
    auto gens = log_generations();
    if (!gens) return gens.error();
    std::optional<std::uint64_t> expected;  // next sequence number
    for (std::size_t i = 0; i < gens->size(); ++i) {
      const std::uint64_t gen = (*gens)[i];
      const bool newest = i + 1 == gens->size();
      const std::filesystem::path path = log_path(gen);
      auto read = log_io::read_all(path);
      if (!read) return read.error();
      const std::string_view bytes = *read;
      ++info.logs;
      max_gen_ = gen;
      std::size_t pos = 0;
      if (newest) newest_ = path;
      if (!valid_file_header(bytes)) {
        if (auto e = damage(path, bytes, 0, newest, 0, expected, "its header is damaged or cut short")) return *e;
        torn_ = {path, 0};
        info.torn_bytes = bytes.size();
        break;
      }
      const std::uint32_t version = get_u32(bytes.data() + 16);
      const std::uint64_t first = get_u64(bytes.data() + 8);
      if (expected && first != *expected) {
        return corrupt(path, 8, "it starts at sequence number " + std::to_string(first) + " but the log before it ended at " +
                                    std::to_string(*expected - 1) + " (a log file is missing or does not belong here)");
      }
      expected = first;
      firsts_.emplace_back(gen, first);
      pos = log_file_header_size;
      while (pos < bytes.size()) {
        auto f = parse_log_frame(bytes, pos, version);
        if (!f && zeros_to_end(bytes, pos)) {  // space reserved for appends: the end
          if (newest) torn_ = {path, pos};
          break;
        }
        if (!f) {
          if (auto e = damage(path, bytes, pos, newest, version, expected, "a frame is damaged or cut short")) return *e;
          torn_ = {path, pos};
          info.torn_bytes = bytes.size() - pos;
          break;
        }
        if (f->seq != *expected) {
          return corrupt(path, pos, "frame has sequence number " + std::to_string(f->seq) + ", expected " +
                                        std::to_string(*expected));
        }
        decode_log_payload(f->payload, [&](const log_op& op) {
          if constexpr (std::is_invocable_v<Apply&, const log_op&, std::uint64_t>) apply(op, f->seq); else apply(op);
          ++info.ops;
        });
        ++info.frames;
        ++*expected;
        pos += f->size;
      }
    }
    if (expected) next_seq_ = *expected;
    return info;
  }

  // Cuts the torn tail replay() found, then creates the log the store appends
  // to (gen = highest + 1). Call once, after replay().
  // The newest log found is synced first (a process crash left it unsynced:
  // it must be durable before a newer log exists).
  result<void> start() {
    if (torn_) {
      auto r = torn_->second == 0 ? remove_file(torn_->first) : log_io::truncate_path(torn_->first, torn_->second);
      if (r && torn_->second == 0) r = sync_directory(directory());  // the removal before the new log
      if (!r) return r;
      torn_.reset();
    } else if (newest_) {
      file f;
      sys_error e = f.open_read_write(*newest_);
      if (!e) e = log_io::sync_data(f.native());
      if (e) return os_error(e, "cannot sync '" + path_text(*newest_) + "'");
    }
    auto f = new_log(max_gen_ + 1);
    if (!f) return f.error();
    log_ = std::move(*f);
    gen_ = max_gen_ + 1;
    bytes_ = log_file_header_size;
    map_current();
    written_.store(next_seq_ - 1);
    synced_ = next_seq_ - 1;
    synced_mark_.store(synced_, std::memory_order_release);
    return {};
  }

  // Appends one frame holding `payload`; returns its sequence number. The
  // bytes are in the kernel when it returns (they survive a process crash).
  // A failed append leaves the file as it was (cut back) or, if that fails
  // too, fails the log.
  result<std::uint64_t> append(log_encoder& frame) {
    if (failed_flag_.load(std::memory_order_acquire)) return failure();
    std::string& f = frame.out_;
    const std::string_view payload = frame.payload();
    char* h = f.data();
    store_u32(h, log_frame_magic);
    store_u32(h + 4, static_cast<std::uint32_t>(payload.size()));
    store_u64(h + 8, next_seq_);
    store_u64(h + 16, synced_mark_.load(std::memory_order_acquire));
    store_u32(h + 24, crc32c(payload));
    store_u32(h + 28, crc32c_extend(0, h, 28));
    if (mapped_) {
      if (auto e = map_.reserve(log_.native(), bytes_ + f.size()))
        return os_error(e, "cannot extend '" + path_text(log_path(gen_)) + "'");  // nothing written
      std::memcpy(map_.data() + bytes_, f.data(), f.size());
    } else if (auto e = log_.write_all(f.data(), f.size())) {
      auto err = os_error(e, "cannot append to '" + path_text(log_path(gen_)) + "'");
      if (log_.truncate(bytes_)) fail(err);
      return err;
    }
    bytes_ += f.size();
    const std::uint64_t seq = next_seq_++;
    written_.store(seq, std::memory_order_release);
    return seq;
  }
  // The sequence number of the last frame appended (0: none yet).
  std::uint64_t last_seq() const noexcept { return written_.load(std::memory_order_acquire); }

  // With sync_writes: returns once frame `seq` is on disk (fdatasync), sharing
  // each sync with every writer waiting at the time. Without: returns at once.
  result<void> sync_through(std::uint64_t seq) {
    if (!sync_writes_) return {};
    std::unique_lock l(sync_mutex_);
    for (;;) {
      if (synced_ >= seq) return {};
      if (failed_) return *failed_;
      if (syncing_) {
        synced_cv_.wait(l);
        continue;
      }
      syncing_ = true;
      const std::uint64_t target = written_.load(std::memory_order_acquire);
      const native_handle h = log_.native();  // stable: rotate() and seal() wait for !syncing_
      l.unlock();
      const sys_error e = log_io::sync_data(h);
      l.lock();
      syncing_ = false;
      if (e)
        fail_locked(sync_error(e));
      else
        synced_ = std::max(synced_, target);
      synced_mark_.store(synced_, std::memory_order_release);
      synced_cv_.notify_all();
    }
  }

  // Bytes in the current log (the fold threshold looks at it).
  std::uint64_t bytes() const noexcept { return bytes_; }
  std::uint64_t generation() const noexcept { return gen_; }  // of the current log

  // Switches to a new log; returns the generation below which logs may be
  // removed once a snapshot of the store as of now is durable. Syncs the old
  // log (cut to its frames) before the new one is created, so no later log
  // ever follows an unsynced one: a crash between the two leaves the old log
  // whole and no new log, never a new log starting past the old one's end.
  result<std::uint64_t> rotate() {
    if (failed()) return failure();
    if (auto s = sync_current(); !s) return s.error();
    auto f = new_log(gen_ + 1);
    if (!f) {
      map_current();  // keeps appending to the current log
      return f.error();
    }
    close_current_for(std::move(*f));
    ++gen_;
    bytes_ = log_file_header_size;
    map_current();
    return gen_;
  }

  // Syncs and closes the current log: no append after it.
  result<void> seal() {
    auto s = sync_current();
    if (s) close_current_for(file());
    return s;
  }

  // Removes the logs older than generation `below` (after a fold).
  result<void> remove_before(std::uint64_t below) {
    auto gens = log_generations();
    if (!gens) return gens.error();
    for (std::uint64_t g : *gens) {
      if (g >= below) break;
      if (auto r = remove_file(log_path(g)); !r) return r;
    }
    firsts_.erase(firsts_.begin(), std::find_if(firsts_.begin(), firsts_.end(), [&](const auto& f) { return f.first >= below; }));
    return {};
  }

  // At close, after seal() and once a snapshot of the store as of now is
  // durable: removes the logs that a replay over that snapshot does not
  // need in order to give every frame from sequence number `from_seq` on
  // (the history a watch can resume from, memory/watch.hpp), and keeps the
  // sequence numbers going for the next open (they only grow, watched or
  // not): one log always stays, and its frames or, without frames, its
  // header's first sequence number say where numbering goes on. So when no
  // frame is needed (from_seq > last_seq()) and the current log has frames,
  // a new log without frames (its 24-byte header) is created and synced,
  // with its directory, before the older ones go; a reader of any keel
  // version replays it as an empty log. When older logs stay, an empty
  // current log goes (their frames carry the numbering). Not thread-safe:
  // the store's save mutex (memory/persistence.hpp) is held, as for folds.
  result<void> trim_at_close(std::uint64_t from_seq) {
    const std::uint64_t last = last_seq();
    const bool current_empty = first_seq_of(gen_) > last;
    if (from_seq > last) {
      if (!current_empty) {
        auto f = new_log(gen_ + 1, /*sync=*/true);
        if (!f) return f.error();
        (void)f->close();
        ++gen_;
      }
      return remove_before(gen_);
    }
    std::uint64_t keep = 0;  // the log holding frame from_seq (0: not known, keep every log)
    for (const auto& [gen, first] : firsts_)
      if (first <= from_seq) keep = gen;
    if (auto r = remove_before(keep); !r) return r;
    const bool older_left = !firsts_.empty() && firsts_.front().first < gen_;
    if (!current_empty || !older_left) return {};
    firsts_.pop_back();  // the current log's
    return remove_file(log_path(gen_));
  }

  bool failed() const noexcept { return failed_flag_.load(std::memory_order_acquire); }
  // Why the log failed (precondition: failed()).
  keel::error failure() const {
    std::lock_guard l(sync_mutex_);
    return *failed_;
  }
  void release_lock() noexcept { lock_.release(); }

  std::filesystem::path log_path(std::uint64_t gen) const {
    char digits[24];
    std::snprintf(digits, sizeof digits, "%012llu", static_cast<unsigned long long>(gen));
    return suffixed(file_, std::string(".wal-") + digits);
  }
  static std::filesystem::path suffixed(const std::filesystem::path& p, std::string_view suffix) {
    std::filesystem::path out = p;
    out += std::string(suffix);
    return out;
  }

 private:
  memory_log(std::filesystem::path file, bool sync_writes) : file_(std::move(file)), sync_writes_(sync_writes) {}

  // The first sequence number of log `gen` (0: unknown, taken as a log
  // with frames).
  std::uint64_t first_seq_of(std::uint64_t gen) const noexcept {
    for (const auto& [g, first] : firsts_)
      if (g == gen) return first;
    return 0;
  }

  std::filesystem::path directory() const {
    return file_.parent_path().empty() ? std::filesystem::path(".") : file_.parent_path();
  }

  // Generations of the existing logs, ascending.
  result<std::vector<std::uint64_t>> log_generations() const {
    namespace fs = std::filesystem;
    const std::string prefix = file_.filename().string() + ".wal-";
    std::vector<std::uint64_t> gens;
    std::error_code ec;
    for (fs::directory_iterator it(directory(), ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.size() != prefix.size() + 12 || name.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string digits = name.substr(prefix.size());
      if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
      gens.push_back(std::stoull(digits));
    }
    if (ec) return errno_error(ec.value(), "cannot list '" + path_text(directory()) + "'");
    std::sort(gens.begin(), gens.end());
    return gens;
  }

  static bool valid_file_header(std::string_view b) {
    return b.size() >= log_file_header_size && b.substr(0, 8) == log_file_magic &&
           (get_u32(b.data() + 16) == log_version || get_u32(b.data() + 16) == 1) &&
           get_u32(b.data() + 20) == crc32c_extend(0, b.data(), 20);
  }

  static bool zeros_to_end(std::string_view bytes, std::size_t pos) {
    return bytes.find_first_not_of('\0', pos) == std::string_view::npos;
  }

  // Maps the current log for appends (bytes_ set); where that fails the log
  // writes instead. Not with sync_writes: each write waits for an fdatasync
  // (~200 us) anyway, and writeback write-protects the mapped pages, so every
  // sync would add page faults to the next appends (measured: 8 synced
  // writers 12.7k puts/s mapped, 16.7k with write()).
  void map_current() {
    map_.unmap();
    mapped_ = false;
    if (sync_writes_) return;
    mapped_ = !map_.reserve(log_.native(), bytes_ + 1);
    if (!mapped_) {
      map_.unmap();
      (void)log_.truncate(bytes_);  // undo a partial reservation
    }
  }

  // Damage at `pos` (0: the file header, then `version` is 0: unknown;
  // `expected`: the sequence number the damaged frame should have, if known).
  // A lost tail (nothing returned: the caller drops everything from `pos`)
  // when it is in the newest log and no valid frame after it says that
  // `expected` was synced before it was written (for damage in the header:
  // that any frame of this log was, since the header is synced before its
  // frames); otherwise the corruption error. Version 1 logs record no sync
  // point: any valid frame after the damage makes it corruption.
  static std::optional<keel::error> damage(const std::filesystem::path& path, std::string_view bytes, std::size_t pos,
                                           bool newest, std::uint32_t version, std::optional<std::uint64_t> expected,
                                           const std::string& what) {
    if (!newest) return corrupt(path, pos, what + " in a log that is not the newest");
    std::optional<std::uint64_t> min_seq;
    for (std::size_t q = pos + 1; q + log_frame_header_size_v1 <= bytes.size(); ++q) {
      if (static_cast<unsigned char>(bytes[q]) != (log_frame_magic & 0xFF)) continue;  // both magics start with 'K'
      if (version != 2 && parse_log_frame(bytes, q, 1)) {
        return corrupt(path, pos, what + ", and a valid frame follows at offset " + std::to_string(q) +
                                      " (not a torn tail: the middle of the log is damaged)");
      }
      if (version == 1) continue;
      auto f = parse_log_frame(bytes, q, 2);
      if (!f) continue;
      if (!min_seq || f->seq < *min_seq) min_seq = f->seq;
      const std::uint64_t synced_from = pos == 0 ? (expected ? *expected : *min_seq) : expected.value_or(0);
      if (f->synced >= synced_from) {
        return corrupt(path, pos, what + ", and the valid frame at offset " + std::to_string(q) + " (sequence number " +
                                      std::to_string(f->seq) + ") was written after sequence numbers through " +
                                      std::to_string(f->synced) +
                                      " were synced (not a lost unsynced tail: synced data is damaged)");
      }
      q += f->size - 1;  // the next candidate after this frame
    }
    return std::nullopt;
  }
  static keel::error corrupt(const std::filesystem::path& path, std::size_t pos, const std::string& what) {
    return keel::error(errc::corruption, "memory store log '" + path_text(path) + "' is corrupted at offset " +
                                             std::to_string(pos) + ": " + what +
                                             ". Nothing was loaded; restore the file from a backup, or move the "
                                             "log aside to open the store without the writes in it");
  }

  result<void> remove_file(const std::filesystem::path& p) const {
    if (auto e = remove_file_checked(p)) return os_error(e, "cannot remove '" + path_text(p) + "'");
    return {};
  }

  // Creates log `gen` with its header. With sync_writes (or `sync`) the
  // header and the directory entry are synced before any write is
  // acknowledged in it.
  result<file> new_log(std::uint64_t gen, bool sync = false) {
    const auto path = log_path(gen);
    auto f = log_io::create(path);
    if (!f) return f.error();
    std::string h(log_file_magic);
    put_u64(h, next_seq_);
    put_u32(h, log_version);
    put_u32(h, crc32c_extend(0, h.data(), 20));
    result<void> w;
    if (auto e = f->write_all(h.data(), h.size())) w = os_error(e, "cannot write '" + path_text(path) + "'");
    if (w && (sync_writes_ || sync)) {
      if (auto e = log_io::sync_data(f->native())) w = sync_error(e);
      if (w) w = sync_directory(directory());
    }
    if (!w) {
      (void)f->close();
      (void)remove_file(path);
      return w.error();
    }
    firsts_.emplace_back(gen, next_seq_);
    return std::move(*f);
  }

  // Waits for a group sync in flight and syncs the current log (cut to its
  // frames, unmapped: map_current() maps it again to go on appending).
  result<void> sync_current() {
    std::unique_lock l(sync_mutex_);
    synced_cv_.wait(l, [&] { return !syncing_; });
    if (failed_) return *failed_;
    if (log_.is_open() && mapped_) {
      // The reserved space goes: the file ends at its last frame (if the cut
      // fails, replay reads the zeros as the end anyway).
      map_.unmap();
      mapped_ = false;
      (void)log_.truncate(bytes_);
    }
    if (log_.is_open()) {
      if (auto e = log_io::sync_data(log_.native())) {
        fail_locked(sync_error(e));
        synced_cv_.notify_all();
        return *failed_;
      }
    }
    synced_ = written_.load(std::memory_order_acquire);
    synced_mark_.store(synced_, std::memory_order_release);
    synced_cv_.notify_all();
    return {};
  }
  // After sync_current() (the writers' mutex held since, so nothing to sync):
  // closes the current log and appends to `next` (a closed file: none).
  void close_current_for(file next) {
    std::unique_lock l(sync_mutex_);
    synced_cv_.wait(l, [&] { return !syncing_; });
    (void)log_.close();
    log_ = std::move(next);
  }

  keel::error sync_error(sys_error e) const {
    return os_error(e, "fdatasync of the log of memory store '" + path_text(file_) +
                              "' failed; the store accepts no more writes (an fsync is never retried). Writes "
                              "acknowledged before are safe; close the store and open it again");
  }
  void fail(keel::error e) {
    std::lock_guard l(sync_mutex_);
    fail_locked(std::move(e));
  }
  void fail_locked(keel::error e) {
    if (!failed_) failed_ = std::move(e);
    failed_flag_.store(true, std::memory_order_release);
  }

  std::filesystem::path file_;
  bool sync_writes_;
  file_lock lock_;
  // Replay and start.
  std::uint64_t max_gen_ = 0;
  std::optional<std::pair<std::filesystem::path, std::size_t>> torn_;
  std::optional<std::filesystem::path> newest_;  // the newest log replay() found
  // Appends (the store's writer mutex).
  file log_;  // the current log (closed after seal())
  log_io::mapping map_;  // the current log, mapped for appends (when mapped_)
  bool mapped_ = false;
  std::uint64_t gen_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t bytes_ = 0;
  std::atomic<std::uint64_t> written_{0};  // highest sequence number fully written
  // The first sequence number of each log there is (its header's), by
  // generation, ascending: replay, new logs, removals (at open, and under the
  // store's save mutex: folds and close).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> firsts_;
  // Syncs.
  mutable std::mutex sync_mutex_;
  std::condition_variable synced_cv_;
  std::uint64_t synced_ = 0;
  std::atomic<std::uint64_t> synced_mark_{0};  // synced_, read by append() for its frame's sync record
  bool syncing_ = false;
  std::optional<keel::error> failed_;
  std::atomic<bool> failed_flag_{false};
};

}  // namespace keel::detail

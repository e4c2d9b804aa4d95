// keel/detail/memory_log.hpp - the write-ahead log of a persisted memory store
// (memory_options::persist_path). Needs no RocksDB headers.
//
// Files, for a store persisted at FILE (docs/durability.md):
//   FILE             the snapshot: a dump (docs/dump-format.md) of the store as
//                    of the last fold
//   FILE.wal-<gen>   logs: every acknowledged write since the snapshot, one
//                    checksummed frame per write or batch; gen = 12 decimal digits
//   FILE.lock        the fcntl lock that keeps one process per file; never deleted
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
// Replay: a damaged or cut frame at the end of the newest log (a torn tail: a
// crash in the middle of an append) is dropped and cut off the file; damage
// followed by any valid frame, or in an older log, refuses the open with
// errc::corruption naming the file and the offset: never a silently shorter
// store.
//
// The POSIX calls are together in namespace log_io (a port replaces that block).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "../dump.hpp"  // crc32c, put_u32/u64, varints, errno_error, sync_directory
#include "../error.hpp"
#include "../key_range.hpp"
#include "dir_registry.hpp"
#include "lock_diagnosis.hpp"

namespace keel::detail {

// ---------------------------------------------------------------------------
// log_io: every system call the log makes.
// ---------------------------------------------------------------------------
namespace log_io {

// Test seam: when set, called instead of fdatasync() on the log (and on the
// new log's header). Return -1 with errno set to inject a failure. Process-wide;
// set it only while no persisted store is syncing.
inline std::atomic<int (*)(int)>& sync_hook() {
  static std::atomic<int (*)(int)> hook{nullptr};
  return hook;
}

// Makes the file's data durable (fdatasync; F_FULLFSYNC on Apple). 0 or -1/errno.
inline int sync_data(int fd) {
  if (auto hook = sync_hook().load()) return hook(fd);
#if defined(__APPLE__)
  if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
  return ::fsync(fd);
#else
  return ::fdatasync(fd);
#endif
}

// Creates `path` (it must not exist) for appending.
inline result<int> create(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error(errno, "cannot create '" + path.string() + "'");
  return fd;
}

inline void close(int fd) noexcept {
  if (fd >= 0) ::close(fd);
}

// Writes all of `data`: 0, or the errno of the failure (the file may then
// hold a prefix of it).
inline int write_all(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

// Cuts the open file back to `size` bytes (undoing a partial append).
inline bool truncate_fd(int fd, std::uint64_t size) noexcept {
  return ::ftruncate(fd, static_cast<off_t>(size)) == 0 && ::lseek(fd, static_cast<off_t>(size), SEEK_SET) >= 0;
}

// Cuts the file at `path` to `size` bytes and syncs it.
inline result<void> truncate_path(const std::filesystem::path& path, std::uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "cannot open '" + path.string() + "' to cut its torn tail");
  int rc = ::ftruncate(fd, static_cast<off_t>(size));
  if (rc == 0) rc = sync_data(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return errno_error(e, "cannot cut the torn tail of '" + path.string() + "'");
  return {};
}

// The whole file.
inline result<std::string> read_all(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "cannot open '" + path.string() + "'");
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return errno_error(e, "cannot read '" + path.string() + "'");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// An exclusive lock on a file, for the life of the process's descriptor.
// Holds the descriptor open: closing any descriptor of the file would drop
// the lock, so the file is opened only after this process's registry claim
// says no other store here has it.
class file_lock {
 public:
  file_lock() = default;
  file_lock(file_lock&& o) noexcept : fd_(std::exchange(o.fd_, -1)), claim_(std::move(o.claim_)) {}
  file_lock& operator=(file_lock&& o) noexcept {
    if (this != &o) {
      release();
      fd_ = std::exchange(o.fd_, -1);
      claim_ = std::move(o.claim_);
    }
    return *this;
  }
  ~file_lock() { release(); }
  void release() noexcept {
    if (fd_ >= 0) ::close(fd_);  // drops the fcntl lock
    fd_ = -1;
    claim_.release();
  }

  // Locks `lock_file` (created if missing) for the store persisted at `store_file`.
  // Errors: already_open_in_process (another store in this process has it),
  // lock_held_by_other_process (naming the holder's PID where the OS tells),
  // locks_unsupported (naming the filesystem), not_found / permission_denied / io_error.
  static result<file_lock> acquire(const std::filesystem::path& lock_file, const std::filesystem::path& store_file) {
    static std::mutex opening;  // no two stores of this process race between stat, create and claim
    std::lock_guard serial(opening);
    const std::string where = "'" + store_file.string() + "'";
    file_lock l;
    struct stat st {};
    if (::stat(lock_file.c_str(), &st) != 0) {
      if (errno != ENOENT) return errno_error(errno, "cannot open " + where + ": cannot stat '" + lock_file.string() + "'");
      int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 && errno != EEXIST) return errno_error(errno, "cannot open " + where + ": cannot create '" + lock_file.string() + "'");
      if (fd >= 0) ::close(fd);  // new file: nobody in this process can hold a lock on it yet
    }
    auto claim = dir_registry::instance().acquire(lock_file);
    if (!claim) {
      if (claim.error() == errc::already_open_in_process) {
        return keel::error(errc::already_open_in_process,
                           "cannot open " + where + ": a store in this process has it open already (" +
                               claim.error().message() + ")");
      }
      return claim.error();
    }
    l.claim_ = std::move(*claim);
    l.fd_ = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
    if (l.fd_ < 0) return errno_error(errno, "cannot open " + where + ": cannot open '" + lock_file.string() + "'");
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    int rc;
    do {
      rc = ::fcntl(l.fd_, F_SETLK, &fl);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return l;
    const int e = errno;
    if (e == EAGAIN || e == EACCES) {
      std::string holder = "another process";
      if (auto h = find_lock_holder(lock_file, /*may_open_lock_file=*/false)) {
        holder = "process " + std::to_string(h->pid);
        if (!h->command.empty()) holder += " (" + h->command + ")";
      }
      return keel::error(errc::lock_held_by_other_process,
                         "cannot open " + where + ": " + holder + " has it open (it holds the lock on '" +
                             lock_file.string() +
                             "'). Close it there, or stop that process; do not delete the lock file, that would "
                             "let two writers corrupt the store");
    }
    if (e == ENOLCK || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS) {
      std::string fs = filesystem_name(lock_file.parent_path().empty() ? "." : lock_file.parent_path());
      return keel::error(errc::locks_unsupported,
                         "cannot open " + where + ": the filesystem" + (fs.empty() ? std::string() : " (" + fs + ")") +
                             " does not support file locks (" + std::strerror(e) +
                             "). Put the file on a local filesystem or enable locking (e.g. lockd for NFS)");
    }
    return errno_error(e, "cannot open " + where + ": cannot lock '" + lock_file.string() + "'");
  }

 private:
  int fd_ = -1;
  dir_registry::claim claim_;
};

}  // namespace log_io

// ---------------------------------------------------------------------------
// Frames. A log file: a 24-byte header ("KEELWAL1", u64 first sequence number,
// u32 version, u32 CRC32C of the 20 bytes before), then frames:
//   u32 magic "KWF1" | u32 payload size | u64 sequence number |
//   u32 CRC32C of the payload | u32 CRC32C of the 20 header bytes before | payload
// A payload is one or more ops, each a kind byte and its fields:
//   1 put:          varint key size, key, varint value size, value
//   2 erase:        varint key size, key
//   3 erase_range:  flags (1: has lower, 2: has upper), [varint size, lower], [varint size, upper]
// Integers little-endian. Sequence numbers rise by one per frame, across files.
// ---------------------------------------------------------------------------
inline constexpr std::string_view log_file_magic = "KEELWAL1";
inline constexpr std::uint32_t log_version = 1;
inline constexpr std::size_t log_file_header_size = 24;
inline constexpr std::uint32_t log_frame_magic = 0x3146574Bu;  // "KWF1"
inline constexpr std::size_t log_frame_header_size = 24;

inline void store_u32(char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline void store_u64(char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

struct log_op {
  enum kind_t : std::uint8_t { put = 1, erase = 2, erase_range = 3 };
  kind_t kind;
  std::string_view key;    // put, erase; erase_range: the lower bound (if has_lower)
  std::string_view value;  // put; erase_range: the upper bound (if has_upper)
  bool has_lower = false, has_upper = false;
};

// Builds one frame: room for the header, then the payload (so that
// memory_log::append() writes it without another copy).
class log_encoder {
 public:
  log_encoder() { clear(); }
  void put(std::string_view key, std::string_view value) {
    out_.push_back(static_cast<char>(log_op::put));
    put_varint(out_, key.size());
    out_.append(key);
    put_varint(out_, value.size());
    out_.append(value);
  }
  void erase(std::string_view key) {
    out_.push_back(static_cast<char>(log_op::erase));
    put_varint(out_, key.size());
    out_.append(key);
  }
  void erase_range(const key_range& r) {
    out_.push_back(static_cast<char>(log_op::erase_range));
    out_.push_back(static_cast<char>((r.lower() ? 1 : 0) | (r.upper() ? 2 : 0)));
    for (const auto* b : {&r.lower(), &r.upper()}) {
      if (!*b) continue;
      put_varint(out_, (*b)->size());
      out_.append(**b);
    }
  }
  std::string_view payload() const noexcept { return std::string_view(out_).substr(log_frame_header_size); }
  bool empty() const noexcept { return out_.size() == log_frame_header_size; }
  void clear() { out_.assign(log_frame_header_size, '\0'); }

 private:
  friend class memory_log;
  std::string out_;
};

// Calls fn(const log_op&) for each op of a payload; false if it is malformed.
template <class Fn>
bool decode_log_payload(std::string_view p, Fn&& fn) {
  std::size_t pos = 0;
  auto field = [&](std::string_view& out) {
    std::uint64_t n = 0;
    if (!get_varint(p, pos, n) || n > p.size() - pos) return false;
    out = p.substr(pos, static_cast<std::size_t>(n));
    pos += static_cast<std::size_t>(n);
    return true;
  };
  if (p.empty()) return false;
  while (pos < p.size()) {
    log_op op{};
    const auto kind = static_cast<unsigned char>(p[pos++]);
    if (kind == log_op::put) {
      op.kind = log_op::put;
      if (!field(op.key) || !field(op.value)) return false;
    } else if (kind == log_op::erase) {
      op.kind = log_op::erase;
      if (!field(op.key)) return false;
    } else if (kind == log_op::erase_range) {
      op.kind = log_op::erase_range;
      if (pos >= p.size()) return false;
      const auto flags = static_cast<unsigned char>(p[pos++]);
      if (flags > 3) return false;
      op.has_lower = flags & 1;
      op.has_upper = flags & 2;
      if (op.has_lower && !field(op.key)) return false;
      if (op.has_upper && !field(op.value)) return false;
    } else {
      return false;
    }
    fn(op);
  }
  return true;
}

// The frame starting at bytes[pos], if it is whole and valid: payload and sequence.
struct log_frame_view {
  std::string_view payload;
  std::uint64_t seq = 0;
  std::size_t size = 0;  // header + payload
};
inline std::optional<log_frame_view> parse_log_frame(std::string_view bytes, std::size_t pos) {
  if (bytes.size() - pos < log_frame_header_size) return std::nullopt;
  const char* h = bytes.data() + pos;
  if (get_u32(h) != log_frame_magic) return std::nullopt;
  if (get_u32(h + 20) != crc32c_extend(0, h, 20)) return std::nullopt;
  const std::uint32_t len = get_u32(h + 4);
  if (len > bytes.size() - pos - log_frame_header_size) return std::nullopt;
  std::string_view payload = bytes.substr(pos + log_frame_header_size, len);
  if (get_u32(h + 16) != crc32c(payload)) return std::nullopt;
  if (!decode_log_payload(payload, [](const log_op&) {})) return std::nullopt;
  return log_frame_view{payload, get_u64(h + 8), log_frame_header_size + len};
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
  ~memory_log() { log_io::close(fd_); }

  // Locks the store's file (see log_io::file_lock). Nothing is read yet.
  static result<std::unique_ptr<memory_log>> lock(const std::filesystem::path& file, bool sync_writes) {
    auto l = log_io::file_lock::acquire(suffixed(file, ".lock"), file);
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

  // Calls apply(const log_op&) for every op of every log, in order. Checks
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
      if (!valid_file_header(bytes)) {
        if (auto e = damage(path, bytes, 0, newest, "its header is damaged or cut short")) return *e;
        torn_ = {path, 0};
        info.torn_bytes = bytes.size();
        break;
      }
      const std::uint64_t first = get_u64(bytes.data() + 8);
      if (expected && first != *expected) {
        return corrupt(path, 8, "it starts at sequence number " + std::to_string(first) + " but the log before it ended at " +
                                    std::to_string(*expected - 1) + " (a log file is missing or does not belong here)");
      }
      expected = first;
      pos = log_file_header_size;
      while (pos < bytes.size()) {
        auto f = parse_log_frame(bytes, pos);
        if (!f) {
          if (auto e = damage(path, bytes, pos, newest, "a frame is damaged or cut short")) return *e;
          torn_ = {path, pos};
          info.torn_bytes = bytes.size() - pos;
          break;
        }
        if (f->seq != *expected) {
          return corrupt(path, pos, "frame has sequence number " + std::to_string(f->seq) + ", expected " +
                                        std::to_string(*expected));
        }
        decode_log_payload(f->payload, [&](const log_op& op) {
          apply(op);
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
  result<void> start() {
    if (torn_) {
      auto r = torn_->second == 0 ? remove_file(torn_->first) : log_io::truncate_path(torn_->first, torn_->second);
      if (!r) return r;
      torn_.reset();
    }
    auto fd = new_log(max_gen_ + 1);
    if (!fd) return fd.error();
    fd_ = *fd;
    gen_ = max_gen_ + 1;
    bytes_ = log_file_header_size;
    written_.store(next_seq_ - 1);
    synced_ = next_seq_ - 1;
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
    store_u32(h + 16, crc32c(payload));
    store_u32(h + 20, crc32c_extend(0, h, 20));
    if (int e = log_io::write_all(fd_, f); e != 0) {
      auto err = errno_error(e, "cannot append to '" + log_path(gen_).string() + "'");
      if (!log_io::truncate_fd(fd_, bytes_)) fail(err);
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
      const int fd = fd_;  // stable: rotate() and seal() wait for !syncing_
      l.unlock();
      const int rc = log_io::sync_data(fd);
      const int e = errno;
      l.lock();
      syncing_ = false;
      if (rc != 0)
        fail_locked(sync_error(e));
      else
        synced_ = std::max(synced_, target);
      synced_cv_.notify_all();
    }
  }

  // Bytes in the current log (the fold threshold looks at it).
  std::uint64_t bytes() const noexcept { return bytes_; }

  // Switches to a new log; returns the generation below which logs may be
  // removed once a snapshot of the store as of now is durable. Syncs the old
  // log first (so no later log ever follows an unsynced one).
  result<std::uint64_t> rotate() {
    if (failed()) return failure();
    auto fd = new_log(gen_ + 1);
    if (!fd) return fd.error();  // keeps appending to the current log
    if (auto s = switch_to(*fd); !s) {
      log_io::close(*fd);
      (void)remove_file(log_path(gen_ + 1));
      return s.error();
    }
    ++gen_;
    bytes_ = log_file_header_size;
    return gen_;
  }

  // Syncs and closes the current log: no append after it.
  result<void> seal() { return switch_to(-1); }

  // Removes the logs older than generation `below` (after a fold).
  result<void> remove_before(std::uint64_t below) {
    auto gens = log_generations();
    if (!gens) return gens.error();
    for (std::uint64_t g : *gens) {
      if (g >= below) break;
      if (auto r = remove_file(log_path(g)); !r) return r;
    }
    return {};
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
    if (ec) return errno_error(ec.value(), "cannot list '" + directory().string() + "'");
    std::sort(gens.begin(), gens.end());
    return gens;
  }

  static bool valid_file_header(std::string_view b) {
    return b.size() >= log_file_header_size && b.substr(0, 8) == log_file_magic &&
           get_u32(b.data() + 16) == log_version && get_u32(b.data() + 20) == crc32c_extend(0, b.data(), 20);
  }

  // Damage at `pos`: a torn tail (nothing returned) when it is in the newest
  // log and no valid frame follows; otherwise the corruption error.
  static std::optional<keel::error> damage(const std::filesystem::path& path, std::string_view bytes, std::size_t pos,
                                           bool newest, const std::string& what) {
    if (!newest) return corrupt(path, pos, what + " in a log that is not the newest");
    for (std::size_t q = pos + 1; q + log_frame_header_size <= bytes.size(); ++q) {
      if (static_cast<unsigned char>(bytes[q]) != (log_frame_magic & 0xFF)) continue;
      if (parse_log_frame(bytes, q)) {
        return corrupt(path, pos, what + ", and a valid frame follows at offset " + std::to_string(q) +
                                      " (not a torn tail: the middle of the log is damaged)");
      }
    }
    return std::nullopt;
  }
  static keel::error corrupt(const std::filesystem::path& path, std::size_t pos, const std::string& what) {
    return keel::error(errc::corruption, "memory store log '" + path.string() + "' is corrupted at offset " +
                                             std::to_string(pos) + ": " + what +
                                             ". Nothing was loaded; restore the file from a backup, or move the "
                                             "log aside to open the store without the writes in it");
  }

  result<void> remove_file(const std::filesystem::path& p) const {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return errno_error(errno, "cannot remove '" + p.string() + "'");
    return {};
  }

  // Creates log `gen` with its header. With sync_writes the header and the
  // directory entry are synced before any write is acknowledged in it.
  result<int> new_log(std::uint64_t gen) {
    const auto path = log_path(gen);
    auto fd = log_io::create(path);
    if (!fd) return fd.error();
    std::string h(log_file_magic);
    put_u64(h, next_seq_);
    put_u32(h, log_version);
    put_u32(h, crc32c_extend(0, h.data(), 20));
    result<void> w;
    if (int e = log_io::write_all(*fd, h); e != 0) w = errno_error(e, "cannot write '" + path.string() + "'");
    if (w && sync_writes_) {
      if (log_io::sync_data(*fd) != 0) w = sync_error(errno);
      if (w) w = sync_directory(directory());
    }
    if (!w) {
      log_io::close(*fd);
      (void)remove_file(path);
      return w.error();
    }
    return *fd;
  }

  // Waits for a group sync in flight, syncs the current log, then closes it
  // and appends to `next` (-1: none) from now on (rotate, seal).
  result<void> switch_to(int next) {
    std::unique_lock l(sync_mutex_);
    synced_cv_.wait(l, [&] { return !syncing_; });
    if (failed_) return *failed_;
    if (fd_ >= 0 && log_io::sync_data(fd_) != 0) {
      fail_locked(sync_error(errno));
      synced_cv_.notify_all();
      return *failed_;
    }
    synced_ = written_.load(std::memory_order_acquire);
    log_io::close(fd_);
    fd_ = next;
    synced_cv_.notify_all();
    return {};
  }

  keel::error sync_error(int e) const {
    return errno_error(e, "fdatasync of the log of memory store '" + file_.string() +
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
  log_io::file_lock lock_;
  // Replay and start.
  std::uint64_t max_gen_ = 0;
  std::optional<std::pair<std::filesystem::path, std::size_t>> torn_;
  // Appends (the store's writer mutex).
  int fd_ = -1;
  std::uint64_t gen_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t bytes_ = 0;
  std::atomic<std::uint64_t> written_{0};  // highest sequence number fully written
  // Syncs.
  mutable std::mutex sync_mutex_;
  std::condition_variable synced_cv_;
  std::uint64_t synced_ = 0;
  bool syncing_ = false;
  std::optional<keel::error> failed_;
  std::atomic<bool> failed_flag_{false};
};

}  // namespace keel::detail

// keel::detail: files and processes, one POSIX and one Windows branch. Every
// other keel header does its file I/O through this one (dumps, persisted
// memory stores), so nothing platform-specific lives anywhere else.
//
// Contract of each function, on both platforms:
//   file::open_read        open an existing file for reading; not inherited
//                          by child processes (O_CLOEXEC / no inheritance).
//   file::create           create or truncate a file for writing (0644 on
//                          POSIX); not inherited.
//   file::open_or_create   open for reading and writing, created if missing,
//                          never truncated; not inherited.
//   file::create_new       create a file that must not exist (O_EXCL /
//                          CREATE_NEW) for writing; not inherited.
//   file::open_read_write  open an existing file for reading and writing.
//   file::truncate         cut (or extend) to n bytes and move the position
//                          there (ftruncate+lseek / SetFilePointerEx+SetEndOfFile).
//   file::sync_data        data durable: fdatasync on Linux, F_FULLFSYNC on
//                          Apple, fsync elsewhere, FlushFileBuffers on Windows.
//   file::try_lock         exclusive advisory lock without waiting (fcntl /
//                          LockFileEx); see its comment for what differs.
//   file::borrow_fd        wrap a C runtime descriptor (1 = stdout); never
//                          closed by the file.
//   file::read_some        up to n bytes, 0 at end of file (EINTR retried).
//   file::write_all        all n bytes or an error (EINTR retried).
//   file::sync             data and metadata durable (fsync / FlushFileBuffers).
//   replace_file(from, to) atomic rename over an existing file (rename /
//                          MoveFileExW with MOVEFILE_REPLACE_EXISTING |
//                          MOVEFILE_WRITE_THROUGH); `to` holds the old file
//                          or the new one, never neither.
//   remove_file_checked(p) remove a file; a file that does not exist is no error.
//   read_whole_file(p)     the whole content of a file (errors through os_error).
//   sync_directory(dir)    make a rename in `dir` durable: fsync of the
//                          directory on POSIX; nothing on Windows, where
//                          MOVEFILE_WRITE_THROUGH already waits for it and a
//                          directory cannot be flushed.
//   may_access, may_create_in  permission checks for messages (Windows: the
//                          read-only attribute only, see below).
//   process_gone(pid)      true only when no process with that id exists (a
//                          process that may exist, or cannot be asked about,
//                          is not gone).
// Paths go to the OS in their native form (path::c_str() is wchar_t on
// Windows and goes only to the W functions). Messages show paths as UTF-8
// (path_text()).
// Errors: a sys_error holds errno (POSIX) or GetLastError() (Windows);
// os_error() turns it into a keel::error with the code mapped (no space,
// permission denied, not found, else io_error) and the system's message.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>

#include "../error.hpp"

#if defined(_WIN32)
#include "windows.hpp"
#include <io.h>
#else
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

namespace keel::detail {

// A path as UTF-8 text for messages (never throws; '?' where it cannot convert).
inline std::string path_text(const std::filesystem::path& p) noexcept {
  try {
    const std::u8string u = p.u8string();
    return std::string(u.begin(), u.end());
  } catch (...) {
    try {
      std::string s;
      for (auto c : p.native()) s.push_back(static_cast<unsigned>(c) < 0x80 ? static_cast<char>(c) : '?');
      return s;
    } catch (...) {
      return "?";
    }
  }
}

// Why `path` cannot take a new checkpoint (every backend's checkpoint()): it
// is empty, it exists (a dangling symlink included), or its parent directory
// does not exist; nullopt when it can. The error is invalid_argument.
inline std::optional<keel::error> checkpoint_path_error(const std::filesystem::path& path) {
  if (path.empty()) return keel::error(errc::invalid_argument, "checkpoint: the path is empty");
  std::error_code ec;
  // symlink_status sets ec for a path that does not exist too (ENOENT).
  if (const auto st = std::filesystem::symlink_status(path, ec);
      std::filesystem::exists(st) || (ec && st.type() != std::filesystem::file_type::not_found)) {
    return keel::error(errc::invalid_argument,
                       "checkpoint: '" + path_text(path) + "' already exists; a checkpoint needs a new path");
  }
  const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(parent, ec)) {
    return keel::error(errc::invalid_argument,
                       "checkpoint: the parent directory of '" + path_text(path) + "' does not exist");
  }
  return std::nullopt;
}

// errno (POSIX) or GetLastError() (Windows); 0 means success.
struct sys_error {
  unsigned long code = 0;
  explicit operator bool() const noexcept { return code != 0; }
};

inline keel::error errno_error(int e, const std::string& what) {
  errc code = e == ENOSPC                               ? errc::no_space
              : e == EACCES || e == EPERM || e == EROFS ? errc::permission_denied
              : e == ENOENT                             ? errc::not_found
                                                        : errc::io_error;
  return keel::error(code, what + ": " + std::strerror(e));
}

#if defined(_WIN32)

// UTF-8 from a wide string (messages only).
inline std::string narrow(const wchar_t* w, int n = -1) {
  if (n < 0) n = static_cast<int>(std::wcslen(w));
  if (n == 0) return {};
  int len = ::WideCharToMultiByte(CP_UTF8, 0, w, n, nullptr, 0, nullptr, nullptr);
  if (len <= 0) return {};
  std::string out(static_cast<std::size_t>(len), '\0');
  ::WideCharToMultiByte(CP_UTF8, 0, w, n, out.data(), len, nullptr, nullptr);
  return out;
}

inline sys_error last_sys_error() noexcept {
  DWORD e = ::GetLastError();
  return sys_error{e == 0 ? static_cast<unsigned long>(ERROR_GEN_FAILURE) : static_cast<unsigned long>(e)};
}

// The system's text for a GetLastError() code, without the trailing newline.
inline std::string system_message(unsigned long code) {
  wchar_t* buf = nullptr;
  DWORD n = ::FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                             nullptr, static_cast<DWORD>(code), 0, reinterpret_cast<wchar_t*>(&buf), 0, nullptr);
  std::string text;
  if (n > 0 && buf != nullptr) text = narrow(buf, static_cast<int>(n));
  if (buf != nullptr) ::LocalFree(buf);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' || text.back() == '.'))
    text.pop_back();
  if (text.empty()) text = "Windows error";
  return text + " (Windows error " + std::to_string(code) + ")";
}

inline keel::error os_error(sys_error e, const std::string& what) {
  errc code;
  switch (e.code) {
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: code = errc::no_space; break;
    case ERROR_ACCESS_DENIED:
    case ERROR_WRITE_PROTECT:
    case ERROR_PRIVILEGE_NOT_HELD: code = errc::permission_denied; break;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND: code = errc::not_found; break;
    default: code = errc::io_error;
  }
  return keel::error(code, what + ": " + system_message(e.code));
}

using native_handle = HANDLE;

#else

inline sys_error last_sys_error() noexcept { return sys_error{static_cast<unsigned long>(errno ? errno : EIO)}; }
inline std::string system_message(unsigned long code) { return std::strerror(static_cast<int>(code)); }
inline keel::error os_error(sys_error e, const std::string& what) {
  return errno_error(static_cast<int>(e.code), what);
}

using native_handle = int;

#endif

// An open file; closes it on destruction unless borrowed. Movable.
class file {
 public:
  file() = default;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  file(file&& o) noexcept : h_(std::exchange(o.h_, invalid())), owned_(std::exchange(o.owned_, false)) {}
  file& operator=(file&& o) noexcept {
    if (this != &o) {
      (void)close();
      h_ = std::exchange(o.h_, invalid());
      owned_ = std::exchange(o.owned_, false);
    }
    return *this;
  }
  ~file() { (void)close(); }

  bool is_open() const noexcept { return h_ != invalid(); }

  sys_error open_read(const std::filesystem::path& p) noexcept {
    (void)close();
#if defined(_WIN32)
    h_ = ::CreateFileW(p.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                       OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
#else
    do h_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    while (h_ < 0 && errno == EINTR);
#endif
    if (!is_open()) return last_sys_error();
    owned_ = true;
    return {};
  }

  sys_error create(const std::filesystem::path& p) noexcept {
    (void)close();
#if defined(_WIN32)
    // FILE_SHARE_DELETE: the file may be renamed over or removed while open.
    h_ = ::CreateFileW(p.c_str(), GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_DELETE, nullptr, CREATE_ALWAYS,
                       FILE_ATTRIBUTE_NORMAL, nullptr);
#else
    do h_ = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    while (h_ < 0 && errno == EINTR);
#endif
    if (!is_open()) return last_sys_error();
    owned_ = true;
    return {};
  }

  // Opens `p` for reading and writing, creating it (0644) if missing, never
  // truncating it (e.g. a log or a lock file); not inherited.
  sys_error open_or_create(const std::filesystem::path& p) noexcept {
    (void)close();
#if defined(_WIN32)
    h_ = ::CreateFileW(p.c_str(), GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                       nullptr, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
#else
    do h_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    while (h_ < 0 && errno == EINTR);
#endif
    if (!is_open()) return last_sys_error();
    owned_ = true;
    return {};
  }

  // Creates `p`, which must not exist, for writing (POSIX: and reading, so
  // that it can be mapped; 0644); `exists` is set (and an error returned)
  // when it does. Not inherited.
  sys_error create_new(const std::filesystem::path& p, bool& exists) noexcept {
    (void)close();
    exists = false;
#if defined(_WIN32)
    h_ = ::CreateFileW(p.c_str(), GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                       CREATE_NEW, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (!is_open()) {
      const sys_error e = last_sys_error();
      exists = e.code == ERROR_FILE_EXISTS || e.code == ERROR_ALREADY_EXISTS;
      return e;
    }
#else
    do h_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    while (h_ < 0 && errno == EINTR);
    if (!is_open()) {
      exists = errno == EEXIST;
      return last_sys_error();
    }
#endif
    owned_ = true;
    return {};
  }

  // Opens the existing file `p` for reading and writing; not inherited.
  sys_error open_read_write(const std::filesystem::path& p) noexcept {
    (void)close();
#if defined(_WIN32)
    h_ = ::CreateFileW(p.c_str(), GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                       nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
#else
    do h_ = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
    while (h_ < 0 && errno == EINTR);
#endif
    if (!is_open()) return last_sys_error();
    owned_ = true;
    return {};
  }

  // Sets the file's size to `size` bytes and the position to its end (e.g.
  // undoing a partial append).
  sys_error truncate(std::uint64_t size) noexcept {
#if defined(_WIN32)
    LARGE_INTEGER at{};
    at.QuadPart = static_cast<LONGLONG>(size);
    if (!::SetFilePointerEx(h_, at, nullptr, FILE_BEGIN) || !::SetEndOfFile(h_)) return last_sys_error();
#else
    int rc;
    do rc = ::ftruncate(h_, static_cast<off_t>(size));
    while (rc != 0 && errno == EINTR);
    if (rc != 0 || ::lseek(h_, static_cast<off_t>(size), SEEK_SET) < 0) return last_sys_error();
#endif
    return {};
  }

  // Makes the file's data durable (see the contract above).
  sys_error sync_data() noexcept { return sync_data(h_); }
  static sys_error sync_data(native_handle h) noexcept {
#if defined(_WIN32)
    if (!::FlushFileBuffers(h)) return last_sys_error();
#elif defined(__APPLE__)
    if (::fcntl(h, F_FULLFSYNC) != 0 && ::fsync(h) != 0) return last_sys_error();
#elif defined(__linux__)
    if (::fdatasync(h) != 0) return last_sys_error();
#else
    if (::fsync(h) != 0) return last_sys_error();
#endif
    return {};
  }

  // Takes an exclusive, advisory lock on the file for this process without
  // waiting; `busy` is set when another process holds it. Released when the
  // file is closed or the process ends (even killed). The file must be open
  // for writing (open_or_create). POSIX: fcntl(F_SETLK, F_WRLCK) on the whole
  // file, as RocksDB locks LOCK; beware that closing ANY other descriptor of
  // the same file in this process drops it. Windows: LockFileEx
  // (LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY) on the first byte;
  // other handles of this process conflict too, and reading or writing that
  // byte through another handle fails while it is held.
  sys_error try_lock(bool& busy) noexcept {
    busy = false;
#if defined(_WIN32)
    OVERLAPPED at{};
    if (::LockFileEx(h_, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &at)) return {};
    if (::GetLastError() == ERROR_LOCK_VIOLATION || ::GetLastError() == ERROR_IO_PENDING) {
      busy = true;
      return {};
    }
    return last_sys_error();
#else
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    int rc;
    do rc = ::fcntl(h_, F_SETLK, &fl);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return {};
    if (errno == EAGAIN || errno == EACCES) {
      busy = true;
      return {};
    }
    return last_sys_error();
#endif
  }

  // Wraps C runtime descriptor `fd` (e.g. 1); the file never closes it.
  sys_error borrow_fd(int fd) noexcept {
    (void)close();
#if defined(_WIN32)
    intptr_t h = ::_get_osfhandle(fd);
    if (h == -1 || h == -2) return sys_error{ERROR_INVALID_HANDLE};
    h_ = reinterpret_cast<HANDLE>(h);
#else
    if (fd < 0) return sys_error{EBADF};
    h_ = fd;
#endif
    owned_ = false;
    return {};
  }

  sys_error read_some(void* buf, std::size_t n, std::size_t& got) noexcept {
    got = 0;
#if defined(_WIN32)
    DWORD want = n > 0x40000000u ? 0x40000000u : static_cast<DWORD>(n), done = 0;
    if (!::ReadFile(h_, buf, want, &done, nullptr)) {
      if (::GetLastError() == ERROR_BROKEN_PIPE) return {};  // a pipe's end of file
      return last_sys_error();
    }
    got = done;
#else
    ssize_t r;
    do r = ::read(h_, buf, n);
    while (r < 0 && errno == EINTR);
    if (r < 0) return last_sys_error();
    got = static_cast<std::size_t>(r);
#endif
    return {};
  }

  sys_error write_all(const void* data, std::size_t n) noexcept {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
#if defined(_WIN32)
      DWORD chunk = n > 0x40000000u ? 0x40000000u : static_cast<DWORD>(n), done = 0;
      if (!::WriteFile(h_, p, chunk, &done, nullptr)) return last_sys_error();
      if (done == 0) return sys_error{ERROR_WRITE_FAULT};
#else
      ssize_t done = ::write(h_, p, n);
      if (done < 0) {
        if (errno == EINTR) continue;
        return last_sys_error();
      }
#endif
      p += done;
      n -= static_cast<std::size_t>(done);
    }
    return {};
  }

  sys_error sync() noexcept {
#if defined(_WIN32)
    if (!::FlushFileBuffers(h_)) return last_sys_error();
#else
    if (::fsync(h_) != 0) return last_sys_error();
#endif
    return {};
  }

  // The size of a regular file (a disk file on Windows); nullopt for pipes,
  // terminals and on error.
  std::optional<std::uint64_t> regular_size() const noexcept {
#if defined(_WIN32)
    LARGE_INTEGER size{};
    if (::GetFileType(h_) != FILE_TYPE_DISK || !::GetFileSizeEx(h_, &size)) return std::nullopt;
    return static_cast<std::uint64_t>(size.QuadPart);
#else
    struct stat st {};
    if (::fstat(h_, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return static_cast<std::uint64_t>(st.st_size);
#endif
  }

  // Closes an owned file (reporting the error: on some filesystems a write
  // error shows only here); forgets a borrowed one. Idempotent.
  sys_error close() noexcept {
    sys_error e{};
    if (is_open() && owned_) {
#if defined(_WIN32)
      if (!::CloseHandle(h_)) e = last_sys_error();
#else
      if (::close(h_) != 0 && errno != EINTR) e = last_sys_error();
#endif
    }
    h_ = invalid();
    owned_ = false;
    return e;
  }

  native_handle native() const noexcept { return h_; }

 private:
  static native_handle invalid() noexcept {
#if defined(_WIN32)
    return INVALID_HANDLE_VALUE;
#else
    return -1;
#endif
  }
  native_handle h_ = invalid();
  bool owned_ = false;
};

// Atomically renames `from` over `to` (see the contract above).
inline sys_error replace_file(const std::filesystem::path& from, const std::filesystem::path& to) noexcept {
#if defined(_WIN32)
  if (!::MoveFileExW(from.c_str(), to.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
    return last_sys_error();
#else
  if (::rename(from.c_str(), to.c_str()) != 0) return last_sys_error();
#endif
  return {};
}

// Removes a file; errors (e.g. it does not exist) are ignored.
inline void remove_file(const std::filesystem::path& p) noexcept {
#if defined(_WIN32)
  (void)::DeleteFileW(p.c_str());
#else
  (void)::unlink(p.c_str());
#endif
}

// Removes file `p`; a file that does not exist is no error.
inline sys_error remove_file_checked(const std::filesystem::path& p) noexcept {
#if defined(_WIN32)
  if (!::DeleteFileW(p.c_str())) {
    const sys_error e = last_sys_error();
    if (e.code != ERROR_FILE_NOT_FOUND && e.code != ERROR_PATH_NOT_FOUND) return e;
  }
#else
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) return last_sys_error();
#endif
  return {};
}

// The whole content of file `p`. Errors: os_error's codes, the message
// naming the path ("cannot open 'p'", "cannot read 'p'").
inline result<std::string> read_whole_file(const std::filesystem::path& p) {
  file f;
  if (auto e = f.open_read(p)) return os_error(e, "cannot open '" + path_text(p) + "'");
  std::string out;
  std::string buf(std::size_t{1} << 16, '\0');
  for (;;) {
    std::size_t got = 0;
    if (auto e = f.read_some(buf.data(), buf.size(), got)) return os_error(e, "cannot read '" + path_text(p) + "'");
    if (got == 0) break;
    out.append(buf.data(), got);
  }
  return out;
}

// Makes a rename in `dir` ("" = the current directory) durable (see above).
inline result<void> sync_directory(const std::filesystem::path& dir) {
#if defined(_WIN32)
  (void)dir;
  return {};
#else
  int fd;
  do fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error(errno, "cannot open directory '" + path_text(dir) + "' to sync it");
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return errno_error(e, "cannot fsync directory '" + path_text(dir) + "'");
  return {};
#endif
}

inline long current_process_id() noexcept {
#if defined(_WIN32)
  return static_cast<long>(::GetCurrentProcessId());
#else
  return static_cast<long>(::getpid());
#endif
}

// True only when no process `pid` exists (see the contract above).
inline bool process_gone(long pid) noexcept {
  if (pid <= 0) return false;
#if defined(_WIN32)
  HANDLE h = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (h == nullptr) return ::GetLastError() == ERROR_INVALID_PARAMETER;  // no such process id
  DWORD code = 0;
  bool exited = ::GetExitCodeProcess(h, &code) && code != STILL_ACTIVE;
  ::CloseHandle(h);
  return exited;
#else
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
#endif
}

// Whether this user may read (and, with `write`, write) `p`. POSIX:
// access(2) with R_OK/W_OK and, for directories, X_OK. Windows: only the
// read-only attribute is checked (_waccess), not the ACLs; an open that the
// ACLs deny still fails with permission_denied.
inline bool may_access(const std::filesystem::path& p, bool write) noexcept {
#if defined(_WIN32)
  return ::_waccess(p.c_str(), write ? 06 : 04) == 0;
#else
  std::error_code ec;
  const bool dir = std::filesystem::is_directory(p, ec);
  return ::access(p.c_str(), (write ? R_OK | W_OK : R_OK) | (dir ? X_OK : 0)) == 0;
#endif
}

// Whether this user may create entries in directory `dir` (POSIX: W_OK|X_OK;
// Windows: see may_access).
inline bool may_create_in(const std::filesystem::path& dir) noexcept {
#if defined(_WIN32)
  return ::_waccess(dir.c_str(), 02) == 0;
#else
  return ::access(dir.c_str(), W_OK | X_OK) == 0;
#endif
}

// This process's user for messages: "uid 1000" (POSIX), "user NAME" (Windows,
// from %USERNAME%).
inline std::string current_user_text() {
#if defined(_WIN32)
  const wchar_t* name = ::_wgetenv(L"USERNAME");
  return name != nullptr && *name != L'\0' ? "user " + narrow(name) : std::string("this user");
#else
  return "uid " + std::to_string(::getuid());
#endif
}

// The owner of `p` for messages: "uid 1000" (POSIX); "" when unknown (and
// always on Windows, where owners are SIDs, not shown).
inline std::string owner_text(const std::filesystem::path& p) {
#if defined(_WIN32)
  (void)p;
  return {};
#else
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return {};
  return "uid " + std::to_string(st.st_uid);
#endif
}

}  // namespace keel::detail

// keel::detail: the identity of a file or directory, the same for every
// spelling of its path; POSIX and Windows branches.
//
// POSIX: (st_dev, st_ino) from stat(), which follows symlinks: "db", "db/",
// "./db" and a symlink to it are one directory.
// Windows: (volume serial number, file index) from GetFileInformationByHandle
// on a handle opened with FILE_FLAG_BACKUP_SEMANTICS (needed for a directory)
// and without FILE_FLAG_OPEN_REPARSE_POINT, so junctions and symlinks are
// followed: "db", "DB", "db\", ".\db" and a junction to it are one directory.
// ReFS's 128-bit file ids are folded to the 64-bit index (as
// GetFileInformationByHandle reports them).
#pragma once

#include <compare>
#include <cstdint>
#include <filesystem>

#include "platform_file.hpp"

#if !defined(_WIN32)
#include <sys/stat.h>
#include <sys/types.h>
#endif

namespace keel::detail {

struct file_identity {
  std::uint64_t device = 0;  // st_dev / volume serial number
  std::uint64_t index = 0;   // st_ino / file index
  friend auto operator<=>(const file_identity&, const file_identity&) = default;
};

// The identity of the existing file or directory `p`, or the OS error
// (errno / GetLastError()) in `err`.
inline file_identity identify(const std::filesystem::path& p, sys_error& err) noexcept {
  err = {};
#if defined(_WIN32)
  HANDLE h = ::CreateFileW(p.c_str(), FILE_READ_ATTRIBUTES, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           nullptr, OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    err = last_sys_error();
    return {};
  }
  BY_HANDLE_FILE_INFORMATION info{};
  const bool ok = ::GetFileInformationByHandle(h, &info) != 0;
  if (!ok) err = last_sys_error();
  ::CloseHandle(h);
  if (!ok) return {};
  return {info.dwVolumeSerialNumber, (std::uint64_t(info.nFileIndexHigh) << 32) | info.nFileIndexLow};
#else
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    err = last_sys_error();
    return {};
  }
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
#endif
}

// Whether `e` means "permission denied" (EACCES / ERROR_ACCESS_DENIED).
inline bool is_permission_error(sys_error e) noexcept {
#if defined(_WIN32)
  return e.code == ERROR_ACCESS_DENIED;
#else
  return e.code == EACCES;
#endif
}

}  // namespace keel::detail

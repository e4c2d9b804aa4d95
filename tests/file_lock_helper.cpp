// tests/file_lock_helper.cpp - holds a file the way RocksDB holds its LOCK,
// for the lock-diagnosis tests of tests/platform_test.cpp (exec'd, never
// forked).
//
//   file_lock_helper FILE
//       POSIX: opens FILE (created if missing) and takes fcntl(F_SETLK,
//       F_WRLCK) on it; Windows: opens it with share mode 0. Prints
//       "locked <pid>", then waits for end of input on stdin and exits 0
//       (which releases the lock).
//   file_lock_helper --keel FILE
//       the same through keel::detail::file::open_or_create + try_lock
//       (Windows: LockFileEx); "busy" and exit 2 if another process has it.
// Errors: "error <message>" on stdout, exit 1. Bad usage: exit 64.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <keel/detail/platform_file.hpp>
#include <string>

#if defined(_WIN32)
#include <keel/detail/windows.hpp>
#else
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#endif

int main(int argc, char** argv) {
  const bool keel_lock = argc == 3 && std::string(argv[1]) == "--keel";
  if (argc != 2 && !keel_lock) {
    std::fprintf(stderr, "usage: file_lock_helper [--keel] FILE\n");
    return 64;
  }
  const std::filesystem::path file = argv[argc - 1];
  keel::detail::file kf;
  if (keel_lock) {
    bool busy = false;
    auto e = kf.open_or_create(file);
    if (!e) e = kf.try_lock(busy);
    if (e) {
      std::printf("error %s\n", keel::detail::system_message(e.code).c_str());
      return 1;
    }
    if (busy) {
      std::printf("busy\n");
      return 2;
    }
    std::printf("locked %ld\n", keel::detail::current_process_id());
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    return 0;
  }
#if defined(_WIN32)
  HANDLE h = ::CreateFileW(file.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_ALWAYS,
                           FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    std::printf("error CreateFileW failed: Windows error %lu\n", static_cast<unsigned long>(::GetLastError()));
    return 1;
  }
  const unsigned long pid = ::GetCurrentProcessId();
#else
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::printf("error open: %s\n", std::strerror(errno));
    return 1;
  }
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd, F_SETLK, &fl) != 0) {
    std::printf("error fcntl: %s\n", std::strerror(errno));
    return 1;
  }
  const unsigned long pid = static_cast<unsigned long>(::getpid());
#endif
  std::printf("locked %lu\n", pid);
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}

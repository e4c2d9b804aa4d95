// tests/file_lock_helper.cpp - holds a file the way RocksDB holds its LOCK,
// for the lock-diagnosis tests of tests/platform_test.cpp (exec'd, never
// forked).
//
//   file_lock_helper FILE
//       POSIX: opens FILE (created if missing) and takes fcntl(F_SETLK,
//       F_WRLCK) on it; Windows: opens it with share mode 0. Prints
//       "locked <pid>", then waits for end of input on stdin and exits 0
//       (which releases the lock).
// Errors: "error <message>" on stdout, exit 1. Bad usage: exit 64.
#include <cstdio>
#include <filesystem>
#include <iostream>
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
  if (argc != 2) {
    std::fprintf(stderr, "usage: file_lock_helper FILE\n");
    return 64;
  }
  const std::filesystem::path file = argv[1];
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

// keel tool: `import -` and `verify -`: standard input spooled to a
// temporary file (a dump is read twice).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <keel/error.hpp>
#include <string>
#include <vector>

#include "exit_codes.hpp"

namespace keel_tool {

// A copy of standard input in a temporary file, for `import -` and
// `verify -`: an import reads its dump twice (the whole file is verified
// before anything is written), which a pipe cannot give. The file goes in
// $TMPDIR (default /tmp) and is removed when the spool goes.
class stdin_spool {
 public:
  stdin_spool() = default;
  stdin_spool(const stdin_spool&) = delete;
  stdin_spool& operator=(const stdin_spool&) = delete;
  ~stdin_spool() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  keel::result<std::string> fill() {
    if (::isatty(0) == 1) return keel::error(keel::errc::invalid_argument, "refusing to read a dump from a terminal");
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/keel-stdin-XXXXXX";
    int fd = ::mkstemp(tmpl.data());
    if (fd < 0) return failure("cannot create a temporary file in " + tmpl.substr(0, tmpl.rfind('/')));
    path_ = tmpl;
    std::vector<char> buf(1 << 16);
    for (;;) {
      ssize_t n = ::read(0, buf.data(), buf.size());
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        ::close(fd);
        return failure("cannot read standard input");
      }
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::write(fd, buf.data() + done, static_cast<std::size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          ::close(fd);
          return failure("cannot copy standard input to " + path_);
        }
        done += w;
      }
    }
    if (::close(fd) != 0) return failure("cannot copy standard input to " + path_);
    return path_;
  }

 private:
  static keel::error failure(const std::string& what) {
    const int e = errno;
    return keel::error(e == ENOSPC ? keel::errc::no_space : keel::errc::io_error, what + ": " + std::strerror(e));
  }
  std::string path_;
};

// The dump file a command reads: FILE itself, or for "-" a spooled copy of stdin.
inline keel::result<std::string> dump_input(const std::string& file, stdin_spool& spool) {
  if (file != "-") return file;
  return spool.fill();
}
// The exit for a failed dump_input(): stdin from a terminal is a usage error.
inline int dump_input_failed(const keel::error& e) {
  return e.code() == keel::errc::invalid_argument ? usage_error(e.message()) : op_error(e);
}

}  // namespace keel_tool

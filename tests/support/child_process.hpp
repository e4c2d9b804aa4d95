// tests/support/child_process.hpp - run a helper program in a separate process
// (posix_spawn, i.e. a real exec: a forked copy of the test would inherit
// RocksDB's process-wide lock map, see design/rocksdb-facts.md).
// Windows: child_process_windows.hpp, the same interface.
#pragma once

#if defined(_WIN32)
#include "child_process_windows.hpp"
#else

#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

extern char** environ;

namespace keel::test {

// What kill() sends by default; wait() then gives 128 + kill_signal.
inline constexpr int kill_signal = SIGKILL;

// A child process with a pipe to its stdin and one from its stdout; stderr is
// inherited. The destructor SIGKILLs and reaps the child if it has not been
// reaped by wait(). Non-copyable, movable.
class child_process {
public:
    // Runs `program` (searched in PATH if it has no '/') with argv[0] =
    // program and then `args`. Throws std::system_error on failure.
    explicit child_process(const std::filesystem::path& program, std::vector<std::string> args = {}) {
        int in_pipe[2] = {-1, -1};
        int out_pipe[2] = {-1, -1};
        if (!make_pipe(in_pipe)) throw_errno("pipe");
        if (!make_pipe(out_pipe)) {
            int const e = errno;
            close_fd(in_pipe[0]);
            close_fd(in_pipe[1]);
            throw std::system_error(e, std::generic_category(), "pipe");
        }

        std::string const prog = program.string();
        std::vector<char*> argv;
        argv.reserve(args.size() + 2);
        argv.push_back(const_cast<char*>(prog.c_str()));
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
        // dup2 clears FD_CLOEXEC on the target; all pipe ends are CLOEXEC, so
        // nothing else leaks into the child.
        posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
        // Fresh signal state: nothing blocked, SIGPIPE default.
        sigset_t none, dflt;
        sigemptyset(&none);
        sigemptyset(&dflt);
        sigaddset(&dflt, SIGPIPE);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &dflt);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

        pid_t pid = -1;
        int const rc = prog.find('/') == std::string::npos
                           ? ::posix_spawnp(&pid, prog.c_str(), &actions, &attr, argv.data(), environ)
                           : ::posix_spawn(&pid, prog.c_str(), &actions, &attr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        close_fd(in_pipe[0]);
        close_fd(out_pipe[1]);
        if (rc != 0) {
            close_fd(in_pipe[1]);
            close_fd(out_pipe[0]);
            throw std::system_error(rc, std::generic_category(), "posix_spawn " + prog);
        }
        pid_ = pid;
        in_fd_ = in_pipe[1];
        out_fd_ = out_pipe[0];
    }

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    child_process(child_process&& o) noexcept
        : pid_(std::exchange(o.pid_, -1)),
          in_fd_(std::exchange(o.in_fd_, -1)),
          out_fd_(std::exchange(o.out_fd_, -1)),
          reaped_(o.reaped_),
          status_(o.status_),
          buffer_(std::move(o.buffer_)) {}

    child_process& operator=(child_process&& o) noexcept {
        if (this != &o) {
            destroy();
            pid_ = std::exchange(o.pid_, -1);
            in_fd_ = std::exchange(o.in_fd_, -1);
            out_fd_ = std::exchange(o.out_fd_, -1);
            reaped_ = o.reaped_;
            status_ = o.status_;
            buffer_ = std::move(o.buffer_);
        }
        return *this;
    }

    ~child_process() { destroy(); }

    long pid() const noexcept { return static_cast<long>(pid_); }

    // Next line from the child's stdout, without the '\n'. At end of output a
    // final unterminated line is returned as is. nullopt on timeout or EOF.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto const nl = buffer_.find('\n'); nl != std::string::npos) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                return line;
            }
            if (out_fd_ < 0) {
                if (buffer_.empty()) return std::nullopt;
                return std::exchange(buffer_, {});
            }
            auto const left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            int const ms = left.count() <= 0 ? 0 : left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count());
            pollfd p{out_fd_, POLLIN, 0};
            int const rc = ::poll(&p, 1, ms);
            if (rc < 0) {
                if (errno == EINTR) continue;
                throw_errno("poll");
            }
            if (rc == 0) {
                if (ms == 0) return std::nullopt;
                continue;  // re-check the deadline
            }
            char chunk[4096];
            ssize_t const n = ::read(out_fd_, chunk, sizeof chunk);
            if (n > 0) {
                buffer_.append(chunk, static_cast<std::size_t>(n));
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                close_fd(out_fd_);  // EOF (or error): drain what is buffered
            }
        }
    }

    // Writes `line` and '\n' to the child's stdin. Throws std::system_error
    // (EPIPE if the child is gone, EBADF after close_stdin()); never raises
    // SIGPIPE in this process.
    void write_line(std::string_view line) {
        if (in_fd_ < 0) throw std::system_error(EBADF, std::generic_category(), "write_line: stdin closed");
        std::string data(line);
        data += '\n';

        // Block SIGPIPE for this thread and swallow one we cause ourselves.
        sigset_t pipe_set, old_mask, pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigemptyset(&pending);
        sigpending(&pending);
        bool const was_pending = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);

        int err = 0;
        std::size_t done = 0;
        while (done < data.size()) {
            ssize_t const n = ::write(in_fd_, data.data() + done, data.size() - done);
            if (n >= 0) {
                done += static_cast<std::size_t>(n);
            } else if (errno != EINTR) {
                err = errno;
                break;
            }
        }
        if (err == EPIPE && !was_pending) {
            sigemptyset(&pending);
            sigpending(&pending);
            if (sigismember(&pending, SIGPIPE) == 1) {
                int sig = 0;
                sigwait(&pipe_set, &sig);
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
        if (err != 0) throw std::system_error(err, std::generic_category(), "write_line");
    }

    // Closes the child's stdin (it reads EOF). Idempotent.
    void close_stdin() noexcept { close_fd(in_fd_); }

    // Sends `sig` unless the child has already been reaped.
    void kill(int sig = SIGKILL) noexcept {
        if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
    }

    // Waits for the child to exit; returns its exit code, or 128 + signal
    // number if it was killed. Repeated calls return the same value.
    int wait() {
        if (reaped_) return status_;
        if (pid_ <= 0) throw std::system_error(ECHILD, std::generic_category(), "wait: no child");
        int st = 0;
        pid_t r;
        do {
            r = ::waitpid(pid_, &st, 0);
        } while (r < 0 && errno == EINTR);
        if (r < 0) throw_errno("waitpid");
        return record(st);
    }

    // Like wait(), but gives up after `timeout` (the child keeps running).
    // Linux: poll on a pidfd; elsewhere (or kernels < 5.3) WNOHANG polling.
    std::optional<int> wait_for(std::chrono::milliseconds timeout) {
        if (reaped_) return status_;
        if (pid_ <= 0) throw std::system_error(ECHILD, std::generic_category(), "wait_for: no child");
        auto const deadline = std::chrono::steady_clock::now() + timeout;
#if defined(__linux__) && defined(SYS_pidfd_open)
        int const pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
        if (pidfd >= 0) {
            for (;;) {
                auto const left =
                    std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
                int const ms = left.count() <= 0 ? 0 : left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count());
                pollfd p{pidfd, POLLIN, 0};
                int const rc = ::poll(&p, 1, ms);
                if (rc < 0 && errno == EINTR) continue;
                if (rc > 0) break;
                if (rc < 0 || ms == 0) break;
            }
            ::close(pidfd);
        }
#endif
        for (;;) {
            int st = 0;
            pid_t const r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) return record(st);
            if (r < 0 && errno != EINTR) throw_errno("waitpid");
            if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
            ::usleep(5000);
        }
    }

private:
    static bool make_pipe(int fds[2]) noexcept {
#if defined(__linux__)
        return ::pipe2(fds, O_CLOEXEC) == 0;
#else
        if (::pipe(fds) != 0) return false;
        ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
        ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
        return true;
#endif
    }

    static void close_fd(int& fd) noexcept {
        if (fd >= 0) ::close(fd);
        fd = -1;
    }

    [[noreturn]] static void throw_errno(const char* what) {
        throw std::system_error(errno, std::generic_category(), what);
    }

    int record(int st) noexcept {
        reaped_ = true;
        if (WIFEXITED(st))
            status_ = WEXITSTATUS(st);
        else if (WIFSIGNALED(st))
            status_ = 128 + WTERMSIG(st);
        else
            status_ = -1;
        return status_;
    }

    void destroy() noexcept {
        close_fd(in_fd_);
        close_fd(out_fd_);
        if (pid_ > 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
            }
        }
        pid_ = -1;
        reaped_ = false;
    }

    pid_t pid_ = -1;
    int in_fd_ = -1;
    int out_fd_ = -1;
    bool reaped_ = false;
    int status_ = -1;
    std::string buffer_;
};

// Path of the helper executable `name`: in $KEEL_TEST_HELPER_DIR if set and
// non-empty, else next to the running test executable.
inline std::filesystem::path helper_path(std::string_view name) {
    if (char const* dir = std::getenv("KEEL_TEST_HELPER_DIR"); dir != nullptr && *dir != '\0')
        return std::filesystem::path(dir) / std::filesystem::path(name);
#if defined(__APPLE__)
    uint32_t size = 0;
    _NSGetExecutablePath(nullptr, &size);
    std::string buf(size, '\0');
    if (_NSGetExecutablePath(buf.data(), &size) != 0) return std::filesystem::path(name);
    buf.resize(buf.find('\0'));
    return std::filesystem::weakly_canonical(buf).parent_path() / std::filesystem::path(name);
#else
    return std::filesystem::read_symlink("/proc/self/exe").parent_path() / std::filesystem::path(name);
#endif
}

}  // namespace keel::test

#endif  // !_WIN32

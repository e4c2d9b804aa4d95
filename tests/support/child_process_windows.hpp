// tests/support/child_process_windows.hpp - the Windows branch of
// child_process.hpp (included from there; same interface): CreateProcessW,
// anonymous pipes for the child's stdin and stdout, TerminateProcess for
// kill(). There are no signals on Windows: kill(sig) terminates the process
// at once with exit code 128 + sig, so wait() gives the same value as on
// POSIX (128 + kill_signal after kill()).
#pragma once

#include <chrono>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <keel/detail/windows.hpp>

namespace keel::test {

// What kill() sends by default: SIGKILL's number on POSIX (Windows has none).
inline constexpr int kill_signal = 9;

class child_process {
public:
    // Runs `program` (searched in PATH if it has no directory; ".exe" is added
    // when it has no extension) with `args`, quoted for the C runtime's parser.
    // Throws std::system_error on failure.
    explicit child_process(const std::filesystem::path& program, std::vector<std::string> args = {}) {
        SECURITY_ATTRIBUTES inherit{};
        inherit.nLength = sizeof inherit;
        inherit.bInheritHandle = TRUE;
        HANDLE in_read = nullptr, in_write = nullptr, out_read = nullptr, out_write = nullptr;
        if (!::CreatePipe(&in_read, &in_write, &inherit, 0)) throw_last("CreatePipe");
        if (!::CreatePipe(&out_read, &out_write, &inherit, 0)) {
            DWORD const e = ::GetLastError();
            ::CloseHandle(in_read);
            ::CloseHandle(in_write);
            throw std::system_error(static_cast<int>(e), std::system_category(), "CreatePipe");
        }
        // Only the child's ends are inherited.
        ::SetHandleInformation(in_write, HANDLE_FLAG_INHERIT, 0);
        ::SetHandleInformation(out_read, HANDLE_FLAG_INHERIT, 0);
        HANDLE err = nullptr;
        ::DuplicateHandle(::GetCurrentProcess(), ::GetStdHandle(STD_ERROR_HANDLE), ::GetCurrentProcess(), &err, 0,
                          TRUE, DUPLICATE_SAME_ACCESS);

        std::wstring cmd = quote(program.native());
        for (auto const& a : args) cmd += L" " + quote(std::filesystem::path(a).native());

        STARTUPINFOW si{};
        si.cb = sizeof si;
        si.dwFlags = STARTF_USESTDHANDLES;
        si.hStdInput = in_read;
        si.hStdOutput = out_write;
        si.hStdError = err;
        PROCESS_INFORMATION pi{};
        BOOL const ok = ::CreateProcessW(nullptr, cmd.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr, &si, &pi);
        DWORD const e = ::GetLastError();
        ::CloseHandle(in_read);
        ::CloseHandle(out_write);
        if (err != nullptr) ::CloseHandle(err);
        if (!ok) {
            ::CloseHandle(in_write);
            ::CloseHandle(out_read);
            throw std::system_error(static_cast<int>(e), std::system_category(), "CreateProcessW " + program.string());
        }
        ::CloseHandle(pi.hThread);
        process_ = pi.hProcess;
        pid_ = static_cast<long>(pi.dwProcessId);
        in_ = in_write;
        out_ = out_read;
    }

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    child_process(child_process&& o) noexcept
        : process_(std::exchange(o.process_, nullptr)),
          pid_(std::exchange(o.pid_, -1)),
          in_(std::exchange(o.in_, nullptr)),
          out_(std::exchange(o.out_, nullptr)),
          reaped_(o.reaped_),
          status_(o.status_),
          buffer_(std::move(o.buffer_)) {}
    child_process& operator=(child_process&& o) noexcept {
        if (this != &o) {
            destroy();
            process_ = std::exchange(o.process_, nullptr);
            pid_ = std::exchange(o.pid_, -1);
            in_ = std::exchange(o.in_, nullptr);
            out_ = std::exchange(o.out_, nullptr);
            reaped_ = o.reaped_;
            status_ = o.status_;
            buffer_ = std::move(o.buffer_);
        }
        return *this;
    }
    ~child_process() { destroy(); }

    long pid() const noexcept { return pid_; }

    // Next line from the child's stdout, without the '\n' (and a '\r' before
    // it). nullopt on timeout or end of output with nothing buffered.
    // Anonymous pipes cannot wait with a timeout: PeekNamedPipe every 2 ms.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto const nl = buffer_.find('\n'); nl != std::string::npos) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                return line;
            }
            if (out_ == nullptr) {
                if (buffer_.empty()) return std::nullopt;
                return std::exchange(buffer_, {});
            }
            DWORD available = 0;
            if (!::PeekNamedPipe(out_, nullptr, 0, nullptr, &available, nullptr)) {
                close_handle(out_);  // broken pipe: the child closed its stdout
                continue;
            }
            if (available == 0) {
                if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
                ::Sleep(2);
                continue;
            }
            char chunk[4096];
            DWORD n = 0;
            DWORD const want = available < sizeof chunk ? available : static_cast<DWORD>(sizeof chunk);
            if (::ReadFile(out_, chunk, want, &n, nullptr) && n > 0)
                buffer_.append(chunk, n);
            else
                close_handle(out_);
        }
    }

    // Writes `line` and '\n' to the child's stdin; throws std::system_error
    // when the child is gone or stdin was closed.
    void write_line(std::string_view line) {
        if (in_ == nullptr)
            throw std::system_error(ERROR_INVALID_HANDLE, std::system_category(), "write_line: stdin closed");
        std::string data(line);
        data += '\n';
        std::size_t done = 0;
        while (done < data.size()) {
            DWORD n = 0;
            if (!::WriteFile(in_, data.data() + done, static_cast<DWORD>(data.size() - done), &n, nullptr))
                throw_last("write_line");
            done += n;
        }
    }

    void close_stdin() noexcept { close_handle(in_); }

    // Terminates the child (exit code 128 + sig) unless it has been reaped.
    void kill(int sig = kill_signal) noexcept {
        if (process_ != nullptr && !reaped_) ::TerminateProcess(process_, static_cast<UINT>(128 + sig));
    }

    // Waits for the child to exit; returns its exit code.
    int wait() {
        if (reaped_) return status_;
        if (process_ == nullptr) throw std::system_error(ERROR_INVALID_HANDLE, std::system_category(), "wait: no child");
        if (::WaitForSingleObject(process_, INFINITE) != WAIT_OBJECT_0) throw_last("WaitForSingleObject");
        return record();
    }

    std::optional<int> wait_for(std::chrono::milliseconds timeout) {
        if (reaped_) return status_;
        if (process_ == nullptr)
            throw std::system_error(ERROR_INVALID_HANDLE, std::system_category(), "wait_for: no child");
        auto const ms = timeout.count() <= 0 ? 0 : timeout.count() >= INFINITE ? INFINITE - 1 : timeout.count();
        DWORD const rc = ::WaitForSingleObject(process_, static_cast<DWORD>(ms));
        if (rc == WAIT_TIMEOUT) return std::nullopt;
        if (rc != WAIT_OBJECT_0) throw_last("WaitForSingleObject");
        return record();
    }

private:
    // One argument quoted as CommandLineToArgvW and the C runtime parse it.
    static std::wstring quote(std::wstring const& arg) {
        if (!arg.empty() && arg.find_first_of(L" \t\n\v\"") == std::wstring::npos) return arg;
        std::wstring out = L"\"";
        for (auto it = arg.begin();; ++it) {
            std::size_t backslashes = 0;
            while (it != arg.end() && *it == L'\\') {
                ++it;
                ++backslashes;
            }
            if (it == arg.end()) {
                out.append(backslashes * 2, L'\\');
                break;
            }
            if (*it == L'"') {
                out.append(backslashes * 2 + 1, L'\\');
            } else {
                out.append(backslashes, L'\\');
            }
            out.push_back(*it);
        }
        out.push_back(L'"');
        return out;
    }

    [[noreturn]] static void throw_last(char const* what) {
        throw std::system_error(static_cast<int>(::GetLastError()), std::system_category(), what);
    }

    static void close_handle(HANDLE& h) noexcept {
        if (h != nullptr) ::CloseHandle(h);
        h = nullptr;
    }

    int record() {
        DWORD code = 0;
        if (!::GetExitCodeProcess(process_, &code)) throw_last("GetExitCodeProcess");
        reaped_ = true;
        status_ = static_cast<int>(code);
        return status_;
    }

    void destroy() noexcept {
        close_handle(in_);
        close_handle(out_);
        if (process_ != nullptr) {
            if (!reaped_) {
                ::TerminateProcess(process_, static_cast<UINT>(128 + kill_signal));
                ::WaitForSingleObject(process_, INFINITE);
            }
            close_handle(process_);
        }
        pid_ = -1;
        reaped_ = false;
    }

    HANDLE process_ = nullptr;
    long pid_ = -1;
    HANDLE in_ = nullptr;
    HANDLE out_ = nullptr;
    bool reaped_ = false;
    int status_ = -1;
    std::string buffer_;
};

// Path of the helper executable `name`: in $KEEL_TEST_HELPER_DIR if set and
// non-empty, else next to the running test executable.
inline std::filesystem::path helper_path(std::string_view name) {
    if (char const* dir = std::getenv("KEEL_TEST_HELPER_DIR"); dir != nullptr && *dir != '\0')
        return std::filesystem::path(dir) / std::filesystem::path(name);
    std::wstring buf(32768, L'\0');
    DWORD const n = ::GetModuleFileNameW(nullptr, buf.data(), static_cast<DWORD>(buf.size()));
    if (n == 0 || n >= buf.size()) return std::filesystem::path(name);
    buf.resize(n);
    return std::filesystem::path(buf).parent_path() / std::filesystem::path(name);
}

}  // namespace keel::test

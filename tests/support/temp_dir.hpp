// tests/support/temp_dir.hpp - a fresh, uniquely named directory for one test.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#if defined(_WIN32)
#include <atomic>
#include <chrono>
#include <random>
#else
#include <sys/stat.h>
#endif

namespace keel::test {

// Creates <temp_directory_path() or parent>/keel-test-XXXXXX (mode 0700, via mkdtemp;
// Windows: a random name made with create_directory, which fails if it
// exists, retried on a clash) and removes it recursively on destruction, first
// restoring owner rwx on every directory (tests may chmod things inside).
// Removal errors are ignored.
// Non-copyable; a moved-from temp_dir owns nothing and has an empty path().
class temp_dir {
public:
    // Throws std::system_error if the directory cannot be created. `parent`:
    // where to create it (default: temp_directory_path()).
    temp_dir() : temp_dir(std::filesystem::temp_directory_path()) {}
    explicit temp_dir(const std::filesystem::path& parent) {
#if defined(_WIN32)
        static std::atomic<unsigned> counter{0};
        std::random_device rd;
        std::mt19937_64 rng((std::uint64_t(rd()) << 32) ^ rd() ^
                            std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^ counter++);
        auto const& base = parent;
        for (int attempt = 0;; ++attempt) {
            std::string name = "keel-test-";
            for (int i = 0; i < 6; ++i) name += "abcdefghijklmnopqrstuvwxyz0123456789"[rng() % 36];
            std::error_code ec;
            if (std::filesystem::create_directory(base / name, ec)) {
                path_ = base / name;
                return;
            }
            if (attempt == 100 || (ec && ec != std::errc::file_exists))
                throw std::system_error(ec ? ec : std::make_error_code(std::errc::file_exists),
                                        "create_directory " + (base / name).string());
        }
#else
        std::string tmpl = (parent / "keel-test-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr)
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
        path_ = tmpl;
#endif
    }

    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    temp_dir(temp_dir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
    temp_dir& operator=(temp_dir&& other) noexcept {
        if (this != &other) {
            remove();
            path_ = std::exchange(other.path_, {});
        }
        return *this;
    }

    ~temp_dir() { remove(); }

    const std::filesystem::path& path() const noexcept { return path_; }

private:
    // Gives the owner rwx on `dir` and every directory below it (not following
    // symlinks), so that remove_all can list and unlink everything.
    static void make_writable(const std::filesystem::path& dir) noexcept {
        try {
            std::error_code pec;
            // POSIX: owner rwx (chmod). Windows: clears the read-only attribute.
            std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                         std::filesystem::perm_options::add, pec);
            std::error_code ec;
            for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
                std::error_code sec;
                if (it->symlink_status(sec).type() == std::filesystem::file_type::directory)
                    make_writable(it->path());
            }
        } catch (...) {
        }
    }

    void remove() noexcept {
        if (path_.empty()) return;
        make_writable(path_);
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
        path_.clear();
    }

    std::filesystem::path path_;
};

}  // namespace keel::test

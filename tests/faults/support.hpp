// tests/faults/support.hpp - what the fault tests (issue 24) share: skipping a
// case with its reason, running a command, and scratch filesystems that are
// real block devices or real small filesystems (a loop-mounted ext4 image, a
// tmpfs of a few MiB), so that power loss and full disks are the kernel's, not
// a simulation.
//
// Skips: a case that cannot run here (not root, no loop devices, no network
// namespaces) calls skip(reason) and returns; skip() prints one line
// "keel-skip: <reason>" on stdout, which scripts/test.sh counts as a
// skipped case (and not as a passed one). Never a silent pass.
//
// Cleanup: every mount, loop device and image is undone by a destructor, so a
// failing REQUIRE (which throws) cleans up too.
//
// Thread safety: none of this is meant to be used from several threads.
#pragma once

#include <doctest/doctest.h>

#include "support/skip.hpp"

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <cstring>
#include <string>
#include <utility>

namespace keel::test::faults {

using keel::test::skip;

// Single-quotes `s` for /bin/sh.
inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

struct command_result {
    int status = -1;     // exit status (128 + signal if killed), -1 if it could not run
    std::string output;  // stdout and stderr, interleaved
};

// Runs `cmd` with /bin/sh -c, capturing stdout and stderr.
inline command_result run_command(const std::string& cmd) {
    command_result r;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    const int st = ::pclose(p);
    if (st != -1) r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

// Runs `cmd` and fails the case (REQUIRE) if it exits non-zero.
inline std::string must_run(const std::string& cmd) {
    command_result r = run_command(cmd);
    INFO("command: " << cmd << "\noutput: " << r.output);
    REQUIRE(r.status == 0);
    return r.output;
}

// Why loop-mounted ext4 images cannot be used here, or nullopt if they can
// (root, mkfs.ext4, losetup and a mount that works; checked once).
inline std::optional<std::string> loop_mounts_unavailable() {
    static const std::optional<std::string> why = []() -> std::optional<std::string> {
        if (::geteuid() != 0) return "needs root (loop devices and mounts)";
        for (const char* tool : {"mkfs.ext4", "losetup", "mount", "umount"})
            if (run_command(std::string("command -v ") + tool).status != 0)
                return std::string(tool) + " not found (Debian: e2fsprogs, util-linux, mount)";
        if (run_command("losetup --find").status != 0) return "no free loop device (losetup --find failed)";
        return std::nullopt;
    }();
    return why;
}

// Why network namespaces with iptables cannot be used here, or nullopt.
inline std::optional<std::string> net_namespaces_unavailable() {
    static const std::optional<std::string> why = []() -> std::optional<std::string> {
        if (::geteuid() != 0) return "needs root (network namespaces, iptables)";
        for (const char* tool : {"unshare", "iptables", "ip", "setpriv"})
            if (run_command(std::string("command -v ") + tool).status != 0)
                return std::string(tool) + " not found (Debian: util-linux, iptables, iproute2)";
        command_result r = run_command("unshare -n sh -c 'ip link set lo up && iptables -L OUTPUT -n'");
        if (r.status != 0) return "unshare -n with iptables does not work here: " + r.output;
        return std::nullopt;
    }();
    return why;
}

// Makes a sparse file of `bytes` at `image` and an ext4 filesystem in it.
inline void make_ext4_image(const std::filesystem::path& image, std::uint64_t bytes) {
    must_run("truncate -s " + std::to_string(bytes) + " " + shell_quote(image.string()));
    must_run("mkfs.ext4 -q -F " + shell_quote(image.string()));
}

// Copies `image` as it is now (cp --sparse=always). Taken while the image is
// still mounted and after the writer was SIGKILLed, the copy holds only what
// reached the loop device (written back or synced): what a power cut leaves.
inline void copy_crash_image(const std::filesystem::path& image, const std::filesystem::path& to) {
    must_run("cp --sparse=always " + shell_quote(image.string()) + " " + shell_quote(to.string()));
}

// An ext4 image attached to a free loop device and mounted at `mount_point`
// (created if missing). Mounting replays the journal, as after a power cut.
// The destructor unmounts (lazily if busy) and detaches the device.
// Default options "commit=300": no periodic journal commit during a test, so
// only what the test syncs (or forces) reaches the device.
class loop_mount {
public:
    loop_mount(std::filesystem::path image, std::filesystem::path mount_point,
               const std::string& options = "commit=300")
        : image_(std::move(image)), mount_point_(std::move(mount_point)) {
        std::filesystem::create_directories(mount_point_);
        std::string dev = must_run("losetup --find --show " + shell_quote(image_.string()));
        while (!dev.empty() && (dev.back() == '\n' || dev.back() == ' ')) dev.pop_back();
        device_ = dev;
        command_result r = run_command("mount -o " + shell_quote(options) + " " + shell_quote(device_) + " " +
                                       shell_quote(mount_point_.string()));
        if (r.status != 0) {
            run_command("losetup -d " + shell_quote(device_));
            device_.clear();
            INFO("mount failed: " << r.output);
            REQUIRE(r.status == 0);
        }
        mounted_ = true;
    }
    loop_mount(const loop_mount&) = delete;
    loop_mount& operator=(const loop_mount&) = delete;
    ~loop_mount() { unmount(); }

    const std::filesystem::path& path() const noexcept { return mount_point_; }
    const std::filesystem::path& image() const noexcept { return image_; }
    const std::string& device() const noexcept { return device_; }

    // Unmounts and detaches now (idempotent). A busy mount is detached lazily.
    void unmount() {
        if (mounted_) {
            if (::umount2(mount_point_.c_str(), 0) != 0) ::umount2(mount_point_.c_str(), MNT_DETACH);
            mounted_ = false;
        }
        if (!device_.empty()) {
            run_command("losetup -d " + shell_quote(device_));
            device_.clear();
        }
    }

private:
    std::filesystem::path image_;
    std::filesystem::path mount_point_;
    std::string device_;
    bool mounted_ = false;
};

// A tmpfs of `bytes` mounted at `mount_point` (created if missing): real
// ENOSPC from write() and posix_fallocate(). The destructor unmounts it.
class tmpfs_mount {
public:
    tmpfs_mount(std::filesystem::path mount_point, std::uint64_t bytes) : mount_point_(std::move(mount_point)) {
        std::filesystem::create_directories(mount_point_);
        const std::string opts = "size=" + std::to_string(bytes);
        if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
            INFO("mount -t tmpfs -o " << opts << " " << mount_point_ << ": " << std::strerror(errno));
            REQUIRE(false);
        }
        mounted_ = true;
    }
    tmpfs_mount(const tmpfs_mount&) = delete;
    tmpfs_mount& operator=(const tmpfs_mount&) = delete;
    ~tmpfs_mount() { unmount(); }

    const std::filesystem::path& path() const noexcept { return mount_point_; }

    void unmount() {
        if (mounted_ && ::umount2(mount_point_.c_str(), 0) != 0) ::umount2(mount_point_.c_str(), MNT_DETACH);
        mounted_ = false;
    }

private:
    std::filesystem::path mount_point_;
    bool mounted_ = false;
};

}  // namespace keel::test::faults

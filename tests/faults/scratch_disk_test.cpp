// tests/faults/scratch_disk_test.cpp - the fault tests' own tools, checked:
// a crash image holds what was synced and not what was only written (so the
// crash-image cases test what reached the disk), and a small tmpfs really
// fills up.
#include "faults/support.hpp"
#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

using namespace keel::test;
using namespace keel::test::faults;

namespace {

void write_file(const std::filesystem::path& p, const std::string& data, bool sync) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    if (sync) REQUIRE(::fsync(fd) == 0);
    ::close(fd);
    if (sync) {
        int dfd = ::open(p.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        REQUIRE(dfd >= 0);
        REQUIRE(::fsync(dfd) == 0);
        ::close(dfd);
    }
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("crash image: holds what was synced, not what was only written") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    temp_dir dir;
    const auto image = dir.path() / "disk.img";
    make_ext4_image(image, 32u << 20);
    const auto crash = dir.path() / "crash.img";
    {
        loop_mount disk(image, dir.path() / "mnt");
        write_file(disk.path() / "synced", std::string(10000, 's'), true);
        write_file(disk.path() / "unsynced", std::string(10000, 'u'), false);
        copy_crash_image(image, crash);
    }
    loop_mount after(crash, dir.path() / "after");
    CHECK(read_file(after.path() / "synced") == std::string(10000, 's'));
    // Written, never synced, no journal commit (commit=300): not on the device.
    CHECK(read_file(after.path() / "unsynced") != std::string(10000, 'u'));
}

TEST_CASE("a small tmpfs gives real ENOSPC") {
    if (::geteuid() != 0) return skip("needs root (mount -t tmpfs)");
    temp_dir dir;
    tmpfs_mount small(dir.path() / "small", 1u << 20);
    int fd = ::open((small.path() / "fill").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    std::string block(64 << 10, 'x');
    int err = 0;
    for (int i = 0; i < 64 && err == 0; ++i)
        if (::write(fd, block.data(), block.size()) < 0) err = errno;
    ::close(fd);
    CHECK(err == ENOSPC);
}

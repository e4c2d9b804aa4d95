// keel/detail/lock_diagnosis.hpp - who holds a RocksDB LOCK file, and on what
// filesystem it lives. Standard library + POSIX, or + Win32 on Windows; used
// to turn RocksDB's "While lock file: ..." (Windows: "Failed to create lock
// file: ...") errors into actionable messages.
//
// Windows: RocksDB opens LOCK with share mode 0 (no fcntl locks there), so a
// second opener gets a sharing violation. Whether LOCK is held is told by
// opening it for reading (a sharing violation means held; on Windows opening
// and closing a file drops nothing), and the holder is named by the Restart
// Manager (RmStartSession / RmRegisterResources / RmGetList, rstrtmgr.dll,
// loaded at run time so that no link flag is needed); when it names nobody
// (e.g. the holder runs as another user or as a service, or under wine, whose
// Restart Manager is a stub) query_lock() says so in its note.
//
// Background (RocksDB 7.8's env/fs_posix.cc, LockFile): a read-write
// RocksDB open takes a POSIX fcntl(F_SETLK, F_WRLCK) lock on <dir>/LOCK and
// keeps the descriptor open. Closing ANY descriptor of that file drops all of
// this process's fcntl locks on it, so nothing here opens the lock file unless
// the caller explicitly allows it.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include "windows.hpp"
#include <restartmanager.h>

#include "platform_file.hpp"
#else
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

#if defined(__linux__)
#include <dirent.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#elif defined(__APPLE__)
#include <sys/mount.h>
#include <sys/param.h>
#include <sys/sysctl.h>
#endif

namespace keel::detail {

// A process holding a lock. `command` is its command line (arguments joined by
// spaces, trimmed); empty if it could not be read (exited, other user, ...).
struct lock_holder {
    long pid = 0;
    std::string command;
};

namespace lock_diagnosis_impl {

inline std::string trim_spaces(std::string s) {
    auto const first = s.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return {};
    auto const last = s.find_last_not_of(" \t\r\n");
    return s.substr(first, last - first + 1);
}

// Command line of `pid` (Windows: the path of its executable), or "" if
// unknown. Never throws.
inline std::string command_of(long pid) noexcept {
    try {
        if (pid <= 0) return {};
#if defined(_WIN32)
        HANDLE h = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
        if (h == nullptr) return {};
        std::wstring buf(32768, L'\0');
        DWORD n = static_cast<DWORD>(buf.size());
        const bool ok = ::QueryFullProcessImageNameW(h, 0, buf.data(), &n) != 0;
        ::CloseHandle(h);
        if (!ok) return {};
        return narrow(buf.data(), static_cast<int>(n));
#elif defined(__linux__)
        std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
        if (!in) return {};
        std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        for (char& c : s)
            if (c == '\0') c = ' ';
        return trim_spaces(std::move(s));
#elif defined(__APPLE__)
        // KERN_PROCARGS2: int argc, exec path, NUL padding, argv[0..argc), env.
        int argmax = 0;
        std::size_t size = sizeof(argmax);
        int mib_max[2] = {CTL_KERN, KERN_ARGMAX};
        if (::sysctl(mib_max, 2, &argmax, &size, nullptr, 0) != 0 || argmax <= 0) return {};
        std::string buf(static_cast<std::size_t>(argmax), '\0');
        size = buf.size();
        int mib[3] = {CTL_KERN, KERN_PROCARGS2, static_cast<int>(pid)};
        if (::sysctl(mib, 3, buf.data(), &size, nullptr, 0) != 0 || size < sizeof(int)) return {};
        buf.resize(size);
        int argc = 0;
        std::memcpy(&argc, buf.data(), sizeof(argc));
        std::size_t pos = sizeof(argc);
        pos = buf.find('\0', pos);  // skip exec path
        if (pos == std::string::npos) return {};
        pos = buf.find_first_not_of('\0', pos);  // skip padding
        std::string out;
        for (int i = 0; i < argc && pos != std::string::npos && pos < buf.size(); ++i) {
            auto const end = buf.find('\0', pos);
            if (!out.empty()) out += ' ';
            out.append(buf, pos, end == std::string::npos ? std::string::npos : end - pos);
            if (end == std::string::npos) break;
            pos = end + 1;
        }
        return trim_spaces(std::move(out));
#else
        return {};
#endif
    } catch (...) {
        return {};
    }
}

#if !defined(_WIN32)
// F_GETLK on a fresh read-only descriptor. Only valid when this process holds
// no fcntl lock on `lock_file` (closing the descriptor would drop it).
inline std::optional<lock_holder> query_with_getlk(const std::filesystem::path& lock_file) noexcept {
    try {
        int const fd = ::open(lock_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) return std::nullopt;
        struct flock fl {};
        fl.l_type = F_WRLCK;  // "could I write-lock the whole file?"
        fl.l_whence = SEEK_SET;
        fl.l_start = 0;
        fl.l_len = 0;
        int rc;
        do {
            rc = ::fcntl(fd, F_GETLK, &fl);
        } while (rc != 0 && errno == EINTR);
        ::close(fd);
        if (rc != 0 || fl.l_type == F_UNLCK) return std::nullopt;
        lock_holder h;
        h.pid = static_cast<long>(fl.l_pid);
        h.command = command_of(h.pid);
        return h;
    } catch (...) {
        return std::nullopt;
    }
}
#endif

#if defined(_WIN32)
// Whether another handle keeps `lock_file` from being opened for reading
// (RocksDB's share mode 0): true = sharing violation, false = it opened,
// nullopt = another error (e.g. it does not exist).
inline std::optional<bool> held_without_sharing(const std::filesystem::path& lock_file) noexcept {
    HANDLE h = ::CreateFileW(lock_file.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                             nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h != INVALID_HANDLE_VALUE) {
        ::CloseHandle(h);
        return false;
    }
    const DWORD e = ::GetLastError();
    if (e == ERROR_SHARING_VIOLATION || e == ERROR_LOCK_VIOLATION) return true;
    return std::nullopt;
}

// The processes the Restart Manager says have `file` open; `why` says why
// there are none when it could not ask. Never throws.
inline std::vector<lock_holder> restart_manager_holders(const std::filesystem::path& file, std::string& why) noexcept {
    std::vector<lock_holder> out;
    try {
        HMODULE dll = ::LoadLibraryW(L"rstrtmgr.dll");
        if (dll == nullptr) {
            why = "the Restart Manager (rstrtmgr.dll) is not available";
            return out;
        }
        using start_fn = DWORD(WINAPI*)(DWORD*, DWORD, WCHAR[]);
        using end_fn = DWORD(WINAPI*)(DWORD);
        using register_fn = DWORD(WINAPI*)(DWORD, UINT, LPCWSTR[], UINT, RM_UNIQUE_PROCESS[], UINT, LPCWSTR[]);
        using list_fn = DWORD(WINAPI*)(DWORD, UINT*, UINT*, RM_PROCESS_INFO[], LPDWORD);
        // GetProcAddress returns FARPROC; the casts go through void* as the
        // documented way to get typed function pointers.
        auto start = reinterpret_cast<start_fn>(reinterpret_cast<void*>(::GetProcAddress(dll, "RmStartSession")));
        auto end = reinterpret_cast<end_fn>(reinterpret_cast<void*>(::GetProcAddress(dll, "RmEndSession")));
        auto reg = reinterpret_cast<register_fn>(reinterpret_cast<void*>(::GetProcAddress(dll, "RmRegisterResources")));
        auto list = reinterpret_cast<list_fn>(reinterpret_cast<void*>(::GetProcAddress(dll, "RmGetList")));
        if (!start || !end || !reg || !list) {
            why = "the Restart Manager (rstrtmgr.dll) lacks its functions";
            ::FreeLibrary(dll);
            return out;
        }
        DWORD session = 0;
        WCHAR key[CCH_RM_SESSION_KEY + 1] = {};
        DWORD rc = start(&session, 0, key);
        if (rc != ERROR_SUCCESS) {
            why = "the Restart Manager could not start a session (" + system_message(rc) + ")";
            ::FreeLibrary(dll);
            return out;
        }
        const std::wstring name = std::filesystem::absolute(file).native();
        LPCWSTR names[1] = {name.c_str()};
        rc = reg(session, 1, names, 0, nullptr, 0, nullptr);
        std::vector<RM_PROCESS_INFO> info(8);
        UINT needed = 0, count = 0;
        DWORD reasons = 0;
        if (rc == ERROR_SUCCESS) {
            for (int attempt = 0; attempt < 3; ++attempt) {
                count = static_cast<UINT>(info.size());
                rc = list(session, &needed, &count, info.data(), &reasons);
                if (rc != ERROR_MORE_DATA) break;
                info.resize(needed + 4);
            }
        }
        end(session);
        ::FreeLibrary(dll);
        if (rc != ERROR_SUCCESS) {
            why = "the Restart Manager could not list the file's users (" + system_message(rc) + ")";
            return out;
        }
        for (UINT i = 0; i < count && i < info.size(); ++i) {
            lock_holder h;
            h.pid = static_cast<long>(info[i].Process.dwProcessId);
            h.command = command_of(h.pid);
            if (h.command.empty()) h.command = narrow(info[i].strAppName);
            out.push_back(std::move(h));
        }
        if (out.empty())
            why = "the Restart Manager names no process (it sees only this user's processes, not services or "
                  "other users' programs)";
    } catch (...) {
        out.clear();
        why = "the Restart Manager could not be asked";
    }
    return out;
}
#endif

#if defined(__linux__)
// One line of /proc/locks describing a granted (not waiting) POSIX write lock.
struct proc_lock_entry {
    long pid = 0;
    unsigned long dev_major = 0, dev_minor = 0;  // printed in hex by the kernel
    unsigned long long inode = 0;                // printed in decimal
};

// Parses e.g. "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 0 EOF".
// Rejects waiter lines ("1: -> POSIX ..."), FLOCK, OFDLCK, LEASE, READ locks.
inline std::optional<proc_lock_entry> parse_proc_locks_line(const std::string& line) {
    std::istringstream in(line);
    std::string id, kind, mode, access, pid_s, dev_ino;
    if (!(in >> id >> kind)) return std::nullopt;
    if (kind != "POSIX") return std::nullopt;  // includes "->" (waiters)
    if (!(in >> mode >> access >> pid_s >> dev_ino)) return std::nullopt;
    if (access != "WRITE") return std::nullopt;
    proc_lock_entry e;
    try {
        std::size_t used = 0;
        e.pid = std::stol(pid_s, &used, 10);
        if (used != pid_s.size()) return std::nullopt;
        auto const c1 = dev_ino.find(':');
        auto const c2 = c1 == std::string::npos ? c1 : dev_ino.find(':', c1 + 1);
        if (c2 == std::string::npos) return std::nullopt;
        e.dev_major = std::stoul(dev_ino.substr(0, c1), nullptr, 16);
        e.dev_minor = std::stoul(dev_ino.substr(c1 + 1, c2 - c1 - 1), nullptr, 16);
        e.inode = std::stoull(dev_ino.substr(c2 + 1), nullptr, 10);
    } catch (...) {
        return std::nullopt;
    }
    return e;
}

// Does `pid` have an open descriptor on the file (dev, ino)? Used only to
// confirm an inode-only match (btrfs subvolumes and overlayfs can report a
// st_dev that differs from the superblock device printed in /proc/locks).
inline bool process_has_file_open(long pid, dev_t dev, ino_t ino) noexcept {
    try {
        std::string const dir = "/proc/" + std::to_string(pid) + "/fd/";
        std::string entry;
        DIR* d = ::opendir(dir.c_str());
        if (d == nullptr) return false;
        bool found = false;
        try {
            while (dirent* ent = ::readdir(d)) {
                if (ent->d_name[0] == '.') continue;
                entry.assign(dir).append(ent->d_name);
                struct stat st {};
                // stat() follows the magic link to the open file without opening it.
                if (::stat(entry.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
                    found = true;
                    break;
                }
            }
        } catch (...) {
        }
        ::closedir(d);
        return found;
    } catch (...) {
        return false;
    }
}
#endif

}  // namespace lock_diagnosis_impl

// Who holds a POSIX (fcntl) write lock on `lock_file`; nullopt if nobody does,
// the file does not exist, or it cannot be determined.
// Linux: reads /proc/locks and matches the file's device and inode; never
// opens `lock_file` (safe to call from the process holding the lock, which
// then reports itself). If /proc/locks is unreadable, falls back to F_GETLK
// when `may_open_lock_file` is true.
// Elsewhere: F_GETLK on a fresh O_RDONLY descriptor, and only when
// `may_open_lock_file` is true: the caller guarantees this process holds no
// lock on the file (F_GETLK never reports the caller's own locks anyway).
inline std::optional<lock_holder> find_lock_holder(const std::filesystem::path& lock_file,
                                                   bool may_open_lock_file = false) noexcept {
    try {
#if defined(_WIN32)
        (void)may_open_lock_file;  // opening a file drops no lock on Windows
        if (lock_diagnosis_impl::held_without_sharing(lock_file) != true) return std::nullopt;
        std::string why;
        auto holders = lock_diagnosis_impl::restart_manager_holders(lock_file, why);
        for (auto& h : holders)
            if (h.pid != static_cast<long>(::GetCurrentProcessId())) return std::move(h);
        if (!holders.empty()) return std::move(holders.front());
        return std::nullopt;
#else
        struct stat st {};
        if (::stat(lock_file.c_str(), &st) != 0) return std::nullopt;
#endif
#if defined(__linux__)
        std::ifstream locks("/proc/locks");
        if (!locks) {
            if (may_open_lock_file) return lock_diagnosis_impl::query_with_getlk(lock_file);
            return std::nullopt;
        }
        unsigned long const want_major = major(st.st_dev);
        unsigned long const want_minor = minor(st.st_dev);
        auto const want_ino = static_cast<unsigned long long>(st.st_ino);
        std::optional<long> inode_only;  // first pid matching the inode on another device
        std::string line;
        while (std::getline(locks, line)) {
            auto const e = lock_diagnosis_impl::parse_proc_locks_line(line);
            if (!e || e->inode != want_ino) continue;
            if (e->dev_major == want_major && e->dev_minor == want_minor) {
                lock_holder h;
                h.pid = e->pid;
                h.command = lock_diagnosis_impl::command_of(e->pid);
                return h;
            }
            if (!inode_only && e->pid > 0 && lock_diagnosis_impl::process_has_file_open(e->pid, st.st_dev, st.st_ino))
                inode_only = e->pid;
        }
        if (inode_only) {
            lock_holder h;
            h.pid = *inode_only;
            h.command = lock_diagnosis_impl::command_of(*inode_only);
            return h;
        }
        return std::nullopt;
#elif !defined(_WIN32)
        if (!may_open_lock_file) return std::nullopt;
        return lock_diagnosis_impl::query_with_getlk(lock_file);
#endif
    } catch (...) {
        return std::nullopt;
    }
}

// Whether file locks work on the filesystem of `file`: takes and drops a
// shared lock on it through a fresh read-only handle (POSIX: fcntl F_RDLCK,
// the kind RocksDB uses; Windows: LockFileEx). Writes nothing. Use it only
// on a file that nobody write-locks and, on POSIX, that this process holds no
// fcntl lock on (closing the descriptor would drop it): RocksDB never locks
// CURRENT; never pass LOCK. nullopt when it cannot tell (cannot open it).
inline std::optional<bool> probe_file_locks(const std::filesystem::path& file) noexcept {
#if defined(_WIN32)
  HANDLE h = ::CreateFileW(file.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) return std::nullopt;
  OVERLAPPED at{};
  std::optional<bool> works;
  if (::LockFileEx(h, LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &at)) {
    ::UnlockFileEx(h, 0, 1, 0, &at);
    works = true;
  } else {
    const DWORD e = ::GetLastError();
    if (e == ERROR_LOCK_VIOLATION) works = true;  // someone holds a conflicting lock: locking works
    else if (e == ERROR_NOT_SUPPORTED || e == ERROR_INVALID_FUNCTION) works = false;
  }
  ::CloseHandle(h);
  return works;
#else
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct flock fl {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  int rc;
  do rc = ::fcntl(fd, F_SETLK, &fl);
  while (rc != 0 && errno == EINTR);
  int e = errno;
  std::optional<bool> works;
  if (rc == 0) {
    fl.l_type = F_UNLCK;
    (void)::fcntl(fd, F_SETLK, &fl);
    works = true;
  } else if (e == ENOLCK || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL) {
    works = false;
  } else if (e == EAGAIN || e == EACCES) {
    works = true;  // someone holds a conflicting lock: locking works
  }
  ::close(fd);
  return works;
#endif
}

// What can be told about a lock file: whether it is held, by whom, and, when
// that is not known, why (`note`, one sentence, empty when all is known).
struct lock_state {
    std::optional<bool> held;            // nullopt: cannot be told here
    std::optional<lock_holder> holder;   // when known
    std::string note;
};

// Linux: /proc/locks (never opens `lock_file`). Other POSIX systems: F_GETLK
// when `may_open_lock_file` (see find_lock_holder), else unknown. Windows: a
// sharing-violation probe tells whether it is held, the Restart Manager who
// holds it. A file that does not exist is not held.
inline lock_state query_lock(const std::filesystem::path& lock_file, bool may_open_lock_file = false) noexcept {
    lock_state s;
    try {
        std::error_code ec;
        if (!std::filesystem::exists(lock_file, ec)) {
            if (ec) s.note = "'" + lock_file.string() + "' cannot be inspected: " + ec.message() + ".";
            else s.held = false;
            return s;
        }
#if defined(_WIN32)
        (void)may_open_lock_file;
        s.held = lock_diagnosis_impl::held_without_sharing(lock_file);
        if (!s.held) {
            s.note = "Whether another process holds it cannot be told: it cannot be opened to check.";
            return s;
        }
        if (!*s.held) return s;
        std::string why;
        auto holders = lock_diagnosis_impl::restart_manager_holders(lock_file, why);
        for (auto& h : holders) {
            if (!s.holder || s.holder->pid == static_cast<long>(::GetCurrentProcessId())) s.holder = h;
        }
        if (!s.holder) s.note = "Another process has it open, but which one cannot be told here: " + why + ".";
#elif defined(__linux__)
        std::ifstream proc_locks("/proc/locks");
        s.holder = find_lock_holder(lock_file, may_open_lock_file);
        if (s.holder) s.held = true;
        else if (proc_locks) s.held = false;
        else s.note = "Whether another process holds its lock cannot be told here (/proc/locks is not readable).";
#else
        s.holder = find_lock_holder(lock_file, may_open_lock_file);
        if (s.holder) s.held = true;
        else if (may_open_lock_file) s.held = false;
        else s.note = "Whether another process holds its lock cannot be told here without opening it.";
#endif
    } catch (...) {
        s.held.reset();
        s.note = "Whether another process holds its lock cannot be told here.";
    }
    return s;
}

// Human name of the filesystem holding `p` ("ext2/ext3/ext4", "xfs", "nfs",
// ...), "unknown (0x<magic>)" for an unlisted Linux magic number, "" if
// statfs fails. macOS: statfs f_fstypename ("apfs", "smbfs", ...). Windows:
// GetVolumeInformationW ("NTFS", "ReFS", "FAT32", ...).
inline std::string filesystem_name(const std::filesystem::path& p) noexcept {
    try {
#if defined(__linux__)
        struct statfs sfs {};
        if (::statfs(p.c_str(), &sfs) != 0) return {};
        // f_type is signed on some ABIs: compare the low 32 bits only.
        auto const magic = static_cast<std::uint32_t>(sfs.f_type);
        switch (magic) {
            case 0xEF53u: return "ext2/ext3/ext4";
            case 0x58465342u: return "xfs";
            case 0x9123683Eu: return "btrfs";
            case 0x01021994u: return "tmpfs";
            case 0x858458F6u: return "ramfs";
            case 0x794C7630u: return "overlayfs";
            case 0x61756673u: return "aufs";
            case 0x6969u: return "nfs";
            case 0xFF534D42u: return "cifs";
            case 0xFE534D42u: return "smb2";
            case 0x517Bu: return "smb";
            case 0x65735546u: return "fuse";
            case 0x2FC12FC1u: return "zfs";
            case 0x01021997u: return "9p";
            case 0x4D44u: return "vfat";
            case 0x2011BAB0u: return "exfat";
            case 0x5346544Eu: return "ntfs";
            case 0x7366746Eu: return "ntfs3";
            case 0x00C36400u: return "ceph";
            case 0x73717368u: return "squashfs";
            case 0xE0F5E1E2u: return "erofs";
            case 0xF2F52010u: return "f2fs";
            case 0xCA451A4Eu: return "bcachefs";
            case 0x3153464Au: return "jfs";
            case 0x52654973u: return "reiserfs";
            case 0x3434u: return "nilfs2";
            case 0x01161970u: return "gfs2";
            case 0x7461636Fu: return "ocfs2";
            case 0x0BD00BD0u: return "lustre";
            case 0x47504653u: return "gpfs";
            case 0x6B414653u: return "afs";
            case 0x5346414Fu: return "openafs";
            case 0x73757245u: return "coda";
            case 0x786F4256u: return "vboxsf";
            case 0xF15Fu: return "ecryptfs";
            case 0x9660u: return "iso9660";
            case 0x15013346u: return "udf";
            case 0x482Bu: return "hfsplus";
            case 0x958458F6u: return "hugetlbfs";
            case 0x9FA0u: return "proc";
            case 0x62656572u: return "sysfs";
            case 0x1373u: return "devfs";
            case 0x27E0EBu: return "cgroup";
            case 0x63677270u: return "cgroup2";
            default: {
                char buf[32];
                std::snprintf(buf, sizeof buf, "unknown (0x%x)", static_cast<unsigned>(magic));
                return buf;
            }
        }
#elif defined(__APPLE__)
        struct statfs sfs {};
        if (::statfs(p.c_str(), &sfs) != 0) return {};
        return std::string(sfs.f_fstypename);
#elif defined(_WIN32)
        // "NTFS", "ReFS", "FAT32", "exFAT"; network shares report the remote
        // filesystem's name.
        std::wstring root(32768, L'\0');
        if (!::GetVolumePathNameW(std::filesystem::absolute(p).c_str(), root.data(), static_cast<DWORD>(root.size())))
            return {};
        wchar_t fs_name[MAX_PATH + 1] = {};
        if (!::GetVolumeInformationW(root.c_str(), nullptr, 0, nullptr, nullptr, nullptr, fs_name, MAX_PATH + 1))
            return {};
        return narrow(fs_name);
#else
        (void)p;
        return {};
#endif
    } catch (...) {
        return {};
    }
}

}  // namespace keel::detail

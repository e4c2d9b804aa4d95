// keel: the files of a hybrid store under its path, and its TIER file: the
// one description of the layout, used by the store (hybrid/policy.hpp,
// hybrid/move.hpp), by the disk doctor (doctor.hpp) and by keel's tool.
//
//   PATH/keel.lock       fcntl lock (LockFileEx on Windows) held while the
//                        store is open, whatever the tier: one process per
//                        path. Never deleted.
//   PATH/TIER            "memory" or "rocksdb" and a line end: which tier
//                        holds the data. Replaced atomically (written aside,
//                        synced, renamed, directory synced): its rename is the
//                        commit point of the move to RocksDB.
//   PATH/memory/store    the memory tier (memory_options::persist_path), with
//                        its logs store.wal-<gen> and its lock store.lock
//   PATH/rocksdb/        the RocksDB tier
//
// Needs neither RocksDB nor the memory backend (the standard library and
// detail/platform_file.hpp). hybrid_layout only names paths and reads; the
// functions that change files (detail::write_tier, remove_memory_files) are
// the store's. Thread safety: the functions keep no state; concurrent calls
// on the same path see each other's files as the filesystem does.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../detail/platform_file.hpp"
#include "../error.hpp"

namespace keel {

// The paths of the hybrid store at `root` (docs/hybrid.md), and its TIER.
struct hybrid_layout {
  // The two tiers TIER may name.
  static constexpr std::string_view memory_tier = "memory";
  static constexpr std::string_view rocksdb_tier = "rocksdb";

  std::filesystem::path root;

  std::filesystem::path lock() const { return root / "keel.lock"; }
  std::filesystem::path tier() const { return root / "TIER"; }
  std::filesystem::path memory_dir() const { return root / "memory"; }
  std::filesystem::path memory_file() const { return memory_dir() / "store"; }
  std::filesystem::path rocksdb_dir() const { return root / "rocksdb"; }

  // Whether `text` (TIER's content without its line end) names a tier.
  static bool names_a_tier(std::string_view text) noexcept { return text == memory_tier || text == rocksdb_tier; }

  // TIER's content without the line ends at its end, whatever it says.
  // Errors: read_whole_file's (not_found when there is no TIER,
  // permission_denied, io_error).
  result<std::string> read_tier_text() const {
    auto text = detail::read_whole_file(tier());
    if (!text) return text.error();
    std::string t = std::move(*text);
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    return t;
  }

  // The tier TIER names ("memory" or "rocksdb"); nullopt when there is no
  // TIER (a new store). Errors: corruption when TIER names no tier,
  // io_error / permission_denied when it cannot be read.
  result<std::optional<std::string>> read_tier() const {
    std::error_code ec;
    if (!std::filesystem::exists(tier(), ec)) {
      if (ec) {
        return keel::error(errc::io_error,
                           "hybrid store: cannot stat '" + detail::path_text(tier()) + "': " + ec.message());
      }
      return std::optional<std::string>();
    }
    auto t = read_tier_text();
    if (!t) return t.error();
    if (!names_a_tier(*t)) {
      return keel::error(errc::corruption, "hybrid store: '" + detail::path_text(tier()) + "' names no tier (\"" +
                                               t->substr(0, 40) +
                                               "\"; expected \"memory\" or \"rocksdb\"); nothing was changed");
    }
    return std::optional<std::string>(std::move(*t));
  }

  // Whether memory/ holds anything but the memory tier's lock file.
  bool has_memory_data() const {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(memory_dir(), ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().filename() != "store.lock") return true;
    }
    return false;
  }
};

namespace detail {

// Replaces the TIER of `layout` atomically and durably with `name`. Returns
// the error and whether the rename happened (after it, TIER may name the new
// tier even though the call failed: the directory sync did not succeed).
inline result<void> write_tier(const hybrid_layout& layout, std::string_view name, bool& renamed) {
  renamed = false;
  const auto aside = layout.root / ("TIER.tmp-" + std::to_string(current_process_id()));
  {
    file f;
    if (auto e = f.create(aside)) return os_error(e, "hybrid store: cannot create '" + path_text(aside) + "'");
    const std::string text = std::string(name) + "\n";
    if (auto e = f.write_all(text.data(), text.size())) {
      remove_file(aside);
      return os_error(e, "hybrid store: cannot write '" + path_text(aside) + "'");
    }
    if (auto e = f.sync()) {
      remove_file(aside);
      return os_error(e, "hybrid store: cannot sync '" + path_text(aside) + "'");
    }
  }
  if (auto e = replace_file(aside, layout.tier())) {
    remove_file(aside);
    return os_error(e, "hybrid store: cannot rename '" + path_text(aside) + "' to '" + path_text(layout.tier()) + "'");
  }
  renamed = true;
  return sync_directory(layout.root);
}

// Removes what the memory tier of `layout` wrote (snapshot, logs,
// temporaries); its lock file stays (lock files are never deleted). Errors
// are ignored: the next open removes what is left.
inline void remove_memory_files(const hybrid_layout& layout) noexcept {
  try {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(layout.memory_dir(), ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().filename() == "store.lock") continue;
      std::error_code rm;
      std::filesystem::remove(it->path(), rm);
    }
    (void)sync_directory(layout.memory_dir());
  } catch (...) {
  }
}

}  // namespace detail
}  // namespace keel

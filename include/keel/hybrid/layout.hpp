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
//   PATH/SEQ_BASE        "<M> <R>" and a line end, written (like TIER) by the
//                        move before its commit point: the memory tier's last
//                        seq M and RocksDB's R at the switch, so that the
//                        store's seq (watch) is RocksDB's - R + M in the
//                        RocksDB tier (hybrid/watch.hpp). Read only when TIER
//                        names rocksdb; missing there: M = R = 0.
//
// Needs neither RocksDB nor the memory backend (the standard library and
// detail/platform_file.hpp). hybrid_layout only names paths and reads; the
// functions that change files (detail::write_tier, remove_memory_files) are
// the store's. Thread safety: the functions keep no state; concurrent calls
// on the same path see each other's files as the filesystem does.
#pragma once

#include <charconv>
#include <cstdint>
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
  std::filesystem::path seq_base() const { return root / "SEQ_BASE"; }

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

// Replaces `target`, a file directly under layout.root, atomically and
// durably with `text` (written aside, synced, renamed, directory synced);
// `renamed` as for write_tier.
inline result<void> replace_hybrid_file(const hybrid_layout& layout, const std::filesystem::path& target,
                                        const std::string& text, bool& renamed) {
  renamed = false;
  const auto aside = layout.root / (target.filename().string() + ".tmp-" + std::to_string(current_process_id()));
  {
    file f;
    if (auto e = f.create(aside)) return os_error(e, "hybrid store: cannot create '" + path_text(aside) + "'");
    if (auto e = f.write_all(text.data(), text.size())) {
      remove_file(aside);
      return os_error(e, "hybrid store: cannot write '" + path_text(aside) + "'");
    }
    if (auto e = f.sync()) {
      remove_file(aside);
      return os_error(e, "hybrid store: cannot sync '" + path_text(aside) + "'");
    }
  }
  if (auto e = replace_file(aside, target)) {
    remove_file(aside);
    return os_error(e, "hybrid store: cannot rename '" + path_text(aside) + "' to '" + path_text(target) + "'");
  }
  renamed = true;
  return sync_directory(layout.root);
}

// Replaces the TIER of `layout` atomically and durably with `name`. Returns
// the error and whether the rename happened (after it, TIER may name the new
// tier even though the call failed: the directory sync did not succeed).
inline result<void> write_tier(const hybrid_layout& layout, std::string_view name, bool& renamed) {
  return replace_hybrid_file(layout, layout.tier(), std::string(name) + "\n", renamed);
}

// How the RocksDB tier's seqs map to the store's (SEQ_BASE above; hybrid/watch.hpp).
struct hybrid_seq_map {
  std::uint64_t small_last = 0;  // M: the memory tier's last seq at the switch
  std::uint64_t large_base = 0;  // R: RocksDB's last seq then, after the copy
  std::uint64_t from_large(std::uint64_t r) const noexcept { return small_last + (r - large_base); }
  std::uint64_t to_large(std::uint64_t s) const noexcept { return large_base + (s - small_last); }
  friend bool operator==(const hybrid_seq_map&, const hybrid_seq_map&) = default;
};

// PATH/SEQ_BASE (hybrid/layout.hpp): missing gives {0, 0} (a store moved
// before watch existed). Errors: corruption when it says something else,
// the file's read errors.
inline result<hybrid_seq_map> read_seq_map(const hybrid_layout& layout) {
  std::error_code ec;
  if (!std::filesystem::exists(layout.seq_base(), ec)) {
    if (ec) return keel::error(errc::io_error, "hybrid store: cannot stat '" + path_text(layout.seq_base()) + "': " + ec.message());
    return hybrid_seq_map{};
  }
  auto text = read_whole_file(layout.seq_base());
  if (!text) return text.error();
  hybrid_seq_map m;
  const char* p = text->data();
  const char* end = p + text->size();
  auto a = std::from_chars(p, end, m.small_last);
  bool ok = a.ec == std::errc() && a.ptr != end && *a.ptr == ' ';
  if (ok) {
    auto b = std::from_chars(a.ptr + 1, end, m.large_base);
    ok = b.ec == std::errc() && (b.ptr == end || *b.ptr == '\n');
  }
  if (!ok) {
    return keel::error(errc::corruption, "hybrid store: '" + path_text(layout.seq_base()) +
                                             "' is not two numbers (\"" + text->substr(0, 40) + "\"); nothing was changed");
  }
  return m;
}
inline result<void> write_seq_map(const hybrid_layout& layout, const hybrid_seq_map& m) {
  bool renamed = false;
  return replace_hybrid_file(layout, layout.seq_base(),
                             std::to_string(m.small_last) + " " + std::to_string(m.large_base) + "\n", renamed);
}

// A hybrid store's checkpoint at `path` (a new directory): `copy_tier(copy)`
// writes the tier's checkpoint into the layout `copy` of `path` (memory/ is
// made first for the memory tier), then SEQ_BASE (RocksDB tier) and TIER.
// Nothing is left at `path` on failure.
template <class CopyTier>
result<void> write_hybrid_checkpoint(const std::filesystem::path& path, std::string_view tier_name,
                                     const hybrid_seq_map& seqs, CopyTier&& copy_tier) {
  const hybrid_layout copy{path};
  std::error_code ec;
  auto fail = [&](keel::error e) {
    std::error_code rm;
    std::filesystem::remove_all(path, rm);
    return e;
  };
  if (!std::filesystem::create_directory(path, ec) || ec)
    return keel::error(errc::io_error, "checkpoint: cannot create '" + path_text(path) + "': " + ec.message());
  const bool large = tier_name == hybrid_layout::rocksdb_tier;
  if (!large && (std::filesystem::create_directory(copy.memory_dir(), ec), ec))
    return fail(keel::error(errc::io_error, "checkpoint: cannot create '" + path_text(copy.memory_dir()) + "': " + ec.message()));
  if (auto r = copy_tier(copy); !r) return fail(r.error());
  if (large) {
    if (auto m = write_seq_map(copy, seqs); !m) return fail(m.error());
  }
  bool renamed = false;
  if (auto t = write_tier(copy, tier_name, renamed); !t) return fail(t.error());
  return {};
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

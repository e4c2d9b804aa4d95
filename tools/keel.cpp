// keel: the command-line tool. See `keel --help` and README.md,
// "Command-line tool".
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <keel/copy.hpp>
#include <keel/doctor.hpp>
#include <keel/dump.hpp>
#include <keel/dump_rocksdb.hpp>
#include <keel/keel.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace {

// Exit codes (documented in --help and the README).
constexpr int exit_ok = 0;
constexpr int exit_not_found = 1;  // get: no such key; doctor: would not open
constexpr int exit_usage = 2;
constexpr int exit_open_failed = 3;  // the store could not be opened; doctor: no database there
constexpr int exit_bad_dump = 4;     // a dump was refused (damaged, truncated, not a dump)
constexpr int exit_failed = 5;       // any other failed operation

const char* const usage_text = R"(usage: keel [OPTIONS] COMMAND [ARGS]

Commands:
  get KEY                 print the value of KEY (exit 1 if absent)
  put KEY VALUE           set KEY to VALUE
  del KEY                 remove KEY (removing an absent key succeeds)
  del --prefix P | --from K [--to K] | --to K  [--no-count]
                          remove every key of the range (--from included, --to
                          excluded) atomically, and report how many (exact: counted
                          by a scan in the same transaction as the erase; --no-count
                          skips that scan, the erase alone is cheap on RocksDB)
  compact [--prefix P] [--from K] [--to K]
                          reclaim the space of overwritten and erased data (RocksDB:
                          CompactRange; memory: nothing to do); reports the size
                          before and after
  checkpoint DIR          write a consistent copy of the store, taken while it is in
                          use, to DIR, which must not exist; it opens with --db DIR
                          (memory store: DIR is a file, for --memory-file DIR)
  scan [--prefix P] [--from K] [--to K] [--reverse] [--limit N] [--keys-only]
                          print entries in byte order, one per line: KEY<TAB>VALUE
  count [--prefix P]      print the number of keys
  export FILE|-  [--prefix P]
                          write a dump (docs/dump-format.md); '-' writes to stdout
  import FILE|-           import a dump; a damaged or truncated file is refused
                          before anything is written; '-' reads stdin (copied to
                          a temporary file in $TMPDIR first: it is read twice)
  verify FILE|-           check a dump's checksums and counts
  migrate SRC DST         copy every entry of store SRC into store DST
  stats                   backend, key count, sizes, operation counters
  doctor PATH             explain a database directory: exists? RocksDB? locked by
                          whom? would an open succeed? It only reads.

Options (before the command):
  --db PATH               the RocksDB directory (default: $KEEL_DB)
  --memory                use the memory backend (as KEEL_USE_MEMORY_STORAGE=1)
  --memory-file FILE      use a memory store persisted in FILE (a dump: loaded at
                          start, saved atomically at the end)
  --fallback              fall back to memory when RocksDB cannot open (as KEEL_FALLBACK_MEMORY=1)
  --json                  JSON output (get, scan, count, stats, doctor, and the summaries
                          of export, import, del with a range, compact, checkpoint)
  --raw                   get: print the value's bytes exactly, no escaping, no newline
  --progress / --no-progress
                          force the progress bar on or off (default: on when stderr is a terminal)
  -h, --help              this text

Read commands (get, scan, count, export, stats, and migrate's SRC) open the
database read-only: they never create anything (a missing path, a directory
with no database in it, or a missing memory store FILE exits 3 with "no
database at PATH"), and they work
while another process has the database open (they read it as of their open,
and say so on stderr). Write commands (put, del, import, and migrate's DST)
create a missing database and say so on stderr. A damaged database exits 3
with the reason, --fallback or not: keel never runs on an empty memory store
in place of a database that exists.

Backend selection follows keel::store_config::from_env("KEEL"): the variables
KEEL_USE_MEMORY_STORAGE and KEEL_FALLBACK_MEMORY (1/0, true/false, yes/no, on/off).
SRC and DST of migrate are RocksDB directories, or memory:FILE for a memory store
persisted in FILE ('memory:' alone: not persisted).

Escaping: keys and values are printed with C-style escapes so that one record is
one line: \\ for a backslash, \t \n \r, and \xHH for every other byte outside
printable ASCII (0x20-0x7e). KEY and VALUE arguments accept the same escapes
(and \0). With --json, strings escape '"' and '\' and write every other byte
outside printable ASCII as \u00HH: each byte is one code point U+0000-U+00FF.

Exit codes: 0 success; 1 get: key absent, doctor: an open would fail now;
2 usage error; 3 the store could not be opened, doctor: no database there yet;
4 a dump was refused (damaged, truncated, not a dump); 5 another operation failed.
)";

std::string escape(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c >= 0x20 && c < 0x7f)
      out.push_back(static_cast<char>(c));
    else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string json_string(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c >= 0x20 && c < 0x7f)
      out.push_back(static_cast<char>(c));
    else {
      out += "\\u00";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out + "\"";
}

std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
      continue;
    }
    if (++i >= s.size()) return std::nullopt;
    switch (s[i]) {
      case '\\':
        out.push_back('\\');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case '0':
        out.push_back('\0');
        break;
      case 'x': {
        auto digit = [](char c) -> int {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;
        };
        if (i + 2 >= s.size()) return std::nullopt;
        int hi = digit(s[i + 1]), lo = digit(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        break;
      }
      default:
        return std::nullopt;
    }
  }
  return out;
}

// A progress bar on stderr, redrawn at most 10 times a second; silent when
// disabled (stderr not a terminal, or --no-progress).
class progress_bar {
 public:
  progress_bar(bool enabled, std::string label) : enabled_(enabled), label_(std::move(label)) {}
  ~progress_bar() { done(); }
  void update(const keel::progress_info& p) {
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    double secs = std::chrono::duration<double>(now - start_).count();
    char line[256];
    if (p.total_bytes > 0 && p.bytes <= p.total_bytes) {
      double f = static_cast<double>(p.bytes) / static_cast<double>(p.total_bytes);
      int filled = static_cast<int>(f * 30);
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(30, '.');
      std::snprintf(line, sizeof line, "\r%s [%s] %3d%%  %llu records", label_.c_str(), bar.c_str(),
                    static_cast<int>(f * 100), static_cast<unsigned long long>(p.records));
    } else {
      std::snprintf(line, sizeof line, "\r%s %llu records, %.1f MB, %.1f s", label_.c_str(),
                    static_cast<unsigned long long>(p.records), static_cast<double>(p.bytes) / 1e6, secs);
    }
    std::fputs(line, stderr);
    std::fflush(stderr);
  }
  void done() {
    if (enabled_ && drawn_) std::fputs("\r\033[K", stderr);
    drawn_ = false;
  }
  keel::progress_fn fn() {
    return [this](const keel::progress_info& p) { update(p); };
  }

 private:
  bool enabled_;
  std::string label_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_{};
};

struct cli {
  std::string db;
  std::string memory_file;  // --memory-file: the memory store persists there
  bool memory = false, fallback = false, json = false, raw = false;
  std::optional<bool> progress;
  std::vector<std::string> args;  // command and its arguments

  bool show_progress() const { return progress.value_or(::isatty(2) == 1); }
};

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "keel: %s\nRun 'keel --help' for usage.\n", msg.c_str());
  return exit_usage;
}

int op_error(const keel::error& e) {
  std::fprintf(stderr, "keel: %s\n", e.message().c_str());
  return exit_failed;
}

int dump_error(const keel::error& e) {
  std::fprintf(stderr, "keel: %s\n", e.message().c_str());
  bool refused = e.code() == keel::errc::corruption || e.code() == keel::errc::invalid_argument ||
                 e.code() == keel::errc::not_supported;
  return refused ? exit_bad_dump : exit_failed;
}

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
keel::result<std::string> dump_input(const std::string& file, stdin_spool& spool) {
  if (file != "-") return file;
  return spool.fill();
}
// The exit for a failed dump_input(): stdin from a terminal is a usage error.
int dump_input_failed(const keel::error& e) {
  return e.code() == keel::errc::invalid_argument ? usage_error(e.message()) : op_error(e);
}

// How a command uses a store. A reader opens a RocksDB directory read-only:
// it creates nothing and works while another process holds the database. A
// writer creates a missing database (and says so).
enum class access { read, write };

// Opens the store `spec` ("memory:" or a RocksDB directory) per store_config::from_env("KEEL").
keel::result<keel::any_store> open_spec(const cli& c, const std::string& spec, access how) {
  keel::store_config base;
  const bool memory_spec = spec == "memory" || spec.rfind("memory:", 0) == 0;
  base.memory.persist_path = c.memory_file;
  if (memory_spec) {
    base.preferred = keel::backend::memory;
    if (spec.size() > 7) base.memory.persist_path = spec.substr(7);
  } else {
    base.path = spec;
  }
  if (c.memory) base.preferred = keel::backend::memory;
  auto cfg = keel::store_config::from_env("KEEL", base);
  if (!cfg) return std::move(cfg).error();
  if (c.fallback) cfg->fallback_to_memory = true;
  if (memory_spec) cfg->preferred = keel::backend::memory;
  // Quiet unless something noteworthy happens (a fallback).
  cfg->log = [](std::string_view line) {
    if (line.find("falling back") != std::string_view::npos)
      std::fprintf(stderr, "keel: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  if (cfg->preferred == keel::backend::rocksdb && cfg->path.empty()) {
    return keel::error(keel::errc::invalid_argument,
                       "no database given: use --db PATH or set KEEL_DB (or --memory for a scratch store)");
  }
  if (cfg->preferred != keel::backend::rocksdb) {
    // A read of a persisted memory store whose file is missing would save an
    // empty file at close: refuse it as for a RocksDB path.
    const auto& file = cfg->memory.persist_path;
    std::error_code ec;
    if (how == access::read && !file.empty() && !std::filesystem::exists(file, ec) && !ec) {
      return keel::error(keel::errc::not_found, "no database at '" + file.string() +
                                                    "' (no such memory store file; nothing was created)");
    }
    return keel::open_store(*cfg);
  }

  const std::string where = "'" + cfg->path.string() + "'";
  const keel::detail::db_dir_state before = keel::detail::inspect_db_dir(cfg->path);
  using kind = keel::detail::db_dir_state::kind;
  if (how == access::read) {
    if (before.what == kind::missing || before.what == kind::empty) {
      return keel::error(keel::errc::not_found,
                         "no database at " + where + " (nothing was created; put or import creates one)");
    }
    cfg->rocks.read_only = true;
  }
  auto store = keel::open_store(*cfg);
  if (!store || store->backend() != keel::backend::rocksdb) return store;
  if (how == access::write && (before.what == kind::missing || before.what == kind::empty)) {
    std::fprintf(stderr, "keel: created a new database at %s\n", where.c_str());
  } else if (how == access::read) {
    // The store sees the data as of this open; say so when someone is
    // writing. This process holds no lock on LOCK (a read-only open takes
    // none), so it may open the file to ask F_GETLK where /proc/locks is
    // missing.
    if (auto h = keel::detail::find_lock_holder(cfg->path / "LOCK", /*may_open_lock_file=*/true)) {
      std::string who = "process " + std::to_string(h->pid);
      if (!h->command.empty()) who += " (" + h->command + ")";
      std::fprintf(stderr,
                   "keel: %s has %s open read-write; this is a read-only view as of now: its later writes are "
                   "not shown\n",
                   who.c_str(), where.c_str());
    }
  }
  return store;
}

int open_failed(const keel::error& e, const std::string& path) {
  std::fprintf(stderr, "keel: %s\n", e.message().c_str());
  using keel::errc;
  const errc k = e.code();
  if (!path.empty() &&
      (k == errc::lock_held_by_other_process || k == errc::permission_denied || k == errc::locks_unsupported ||
       k == errc::io_error || k == errc::corruption))
    std::fprintf(stderr, "keel: for an explanation, run: keel doctor %s\n", path.c_str());
  return exit_open_failed;
}

std::string db_path(const cli& c) {
  if (!c.db.empty()) return c.db;
  if (const char* e = std::getenv("KEEL_DB")) return e;
  return {};
}

void write_out(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

// Parses scan/count/export options from args[from...]; returns an error message or "".
struct range_opts {
  std::optional<std::string> prefix, lo, hi;
  bool reverse = false, keys_only = false;
  std::optional<std::uint64_t> limit;
  std::vector<std::string> positional;
  keel::key_range range() const {
    keel::key_range r = keel::key_range::all();
    if (prefix) r = keel::key_range::prefix(*prefix);
    if (lo && hi)
      r = keel::key_range::between(*lo, *hi);
    else if (lo)
      r = keel::key_range::from(*lo);
    else if (hi)
      r = keel::key_range::until(*hi);
    return reverse ? r.reversed() : r;
  }
};

std::string parse_range(const std::vector<std::string>& a, std::size_t from, range_opts& o) {
  for (std::size_t i = from; i < a.size(); ++i) {
    const std::string& s = a[i];
    auto value = [&](std::optional<std::string>& dst) -> std::string {
      if (i + 1 >= a.size()) return s + " needs a value";
      auto u = unescape(a[++i]);
      if (!u) return "bad escape in '" + a[i] + "'";
      dst = *u;
      return "";
    };
    std::string err;
    if (s == "--prefix")
      err = value(o.prefix);
    else if (s == "--from")
      err = value(o.lo);
    else if (s == "--to")
      err = value(o.hi);
    else if (s == "--reverse")
      o.reverse = true;
    else if (s == "--keys-only")
      o.keys_only = true;
    else if (s == "--limit") {
      if (i + 1 >= a.size()) return "--limit needs a value";
      char* end = nullptr;
      const std::string& n = a[++i];
      unsigned long long v = std::strtoull(n.c_str(), &end, 10);
      if (n.empty() || *end != '\0' || n[0] == '-') return "--limit needs a number, not '" + n + "'";
      o.limit = v;
    } else if (s.rfind("--", 0) == 0 && s.size() > 2)
      return "unknown option " + s;
    else
      o.positional.push_back(s);
    if (!err.empty()) return err;
  }
  if (o.prefix && (o.lo || o.hi)) return "--prefix cannot be combined with --from/--to";
  return "";
}

int cmd_doctor(const cli& c) {
  if (c.args.size() != 2) return usage_error("doctor takes one PATH");
  keel::doctor_report r = keel::diagnose(c.args[1]);
  int code = r.verdict == keel::doctor_verdict::opens          ? exit_ok
             : r.verdict == keel::doctor_verdict::would_create ? exit_open_failed
                                                               : exit_not_found;
  if (c.json) {
    std::string j = "{\"path\":" + json_string(r.path.string());
    j += ",\"exists\":" + std::string(r.exists ? "true" : "false");
    j += ",\"is_directory\":" + std::string(r.is_directory ? "true" : "false");
    j += ",\"is_rocksdb\":" + std::string(r.is_rocksdb ? "true" : "false");
    j += ",\"lock_file\":" + std::string(r.lock_file ? "true" : "false");
    j += ",\"locked\":" + std::string(r.holder ? "true" : "false");
    if (r.holder) {
      j += ",\"holder_pid\":" + std::to_string(r.holder->pid);
      j += ",\"holder_command\":" + json_string(r.holder->command);
    }
    j += ",\"filesystem\":" + json_string(r.filesystem);
    j += ",\"filesystem_may_not_lock\":" + std::string(r.filesystem_may_not_lock ? "true" : "false");
    if (r.locks_work) j += ",\"locks_work\":" + std::string(*r.locks_work ? "true" : "false");
    if (r.estimated_keys) j += ",\"estimated_keys\":" + std::to_string(*r.estimated_keys);
    const char* verdict = r.verdict == keel::doctor_verdict::opens          ? "opens"
                          : r.verdict == keel::doctor_verdict::would_create ? "would_create"
                                                                            : "will_not_open";
    j += ",\"verdict\":\"" + std::string(verdict) + "\"";
    j += ",\"findings\":[";
    for (std::size_t i = 0; i < r.findings.size(); ++i) j += (i ? "," : "") + json_string(r.findings[i]);
    j += "],\"advice\":" + json_string(r.advice) + "}\n";
    write_out(j);
  } else {
    for (const auto& f : r.findings) std::printf("%s\n", f.c_str());
    if (!r.advice.empty()) std::printf("What to do: %s\n", r.advice.c_str());
  }
  return code;
}

int cmd_verify(const cli& c) {
  if (c.args.size() != 2) return usage_error("verify takes one FILE");
  stdin_spool spool;
  auto file = dump_input(c.args[1], spool);
  if (!file) return dump_input_failed(file.error());
  progress_bar bar(c.show_progress(), "verifying");
  auto info = keel::verify_dump(*file, bar.fn());
  bar.done();
  if (!info) return dump_error(info.error());
  if (c.json)
    std::printf("{\"records\":%llu,\"payload_bytes\":%llu,\"file_bytes\":%llu,\"sorted\":%s,\"version\":%u}\n",
                static_cast<unsigned long long>(info->records), static_cast<unsigned long long>(info->payload_bytes),
                static_cast<unsigned long long>(info->file_bytes), info->sorted ? "true" : "false", info->version);
  else
    std::printf("ok: %llu records, %llu bytes of keys and values, format version %u\n",
                static_cast<unsigned long long>(info->records), static_cast<unsigned long long>(info->payload_bytes),
                info->version);
  return exit_ok;
}

int cmd_migrate(const cli& c) {
  if (c.args.size() != 3) return usage_error("migrate takes SRC and DST");
  auto src = open_spec(c, c.args[1], access::read);
  if (!src) return open_failed(src.error(), c.args[1]);
  auto dst = open_spec(c, c.args[2], access::write);
  if (!dst) return open_failed(dst.error(), c.args[2]);
  progress_bar bar(c.show_progress(), "migrating");
  auto n = keel::copy(*src, *dst, bar.fn());
  bar.done();
  if (!n) return op_error(n.error());
  if (auto r = dst->close(); !r) return op_error(r.error());
  if (c.json)
    std::printf("{\"records\":%llu,\"payload_bytes\":%llu}\n", static_cast<unsigned long long>(n->records),
                static_cast<unsigned long long>(n->payload_bytes));
  else
    std::fprintf(stderr, "keel: copied %llu records (%llu bytes of keys and values)\n",
                 static_cast<unsigned long long>(n->records), static_cast<unsigned long long>(n->payload_bytes));
  return exit_ok;
}

// --- Range erase, compaction, checkpoints (issue 12). Each command checks its
// arguments, opens the store read-write, runs, and closes it.

// Opens the store of --db / $KEEL_DB (or --memory, --memory-file), runs
// fn(store) and closes the store; returns fn's exit code, or the open's or
// the close's failure.
template <class F>
int with_store(const cli& c, F&& fn) {
  const std::string path = db_path(c);
  auto opened = open_spec(c, c.memory ? "memory:" + c.memory_file : path);
  if (!opened) return open_failed(opened.error(), path);
  const int rc = fn(*opened);
  if (auto r = opened->close(); !r) return rc == exit_ok ? op_error(r.error()) : rc;
  return rc;
}

// Whether `del ARGS` is a range erase (`del --prefix P`, `del --from K`, ...)
// rather than `del KEY`.
bool is_del_range(const cli& c) {
  if (c.args.size() < 2 || c.args[0] != "del") return false;
  const std::string& a = c.args[1];
  return a == "--prefix" || a == "--from" || a == "--to" || a == "--no-count";
}

// del --prefix P | --from K [--to K] | --to K [--no-count]: erase_range.
// The count is exact: the keys are counted by a scan of the range in the
// same transaction as the erase, so a write into the range by anyone else in
// between makes the commit conflict, and run_transaction runs both again.
int cmd_del_range(const cli& c) {
  bool count = true;
  std::vector<std::string> rest;
  for (std::size_t i = 1; i < c.args.size(); ++i) {
    const std::string& s = c.args[i];
    if (s == "--no-count") {
      count = false;
      continue;
    }
    rest.push_back(s);
    if ((s == "--prefix" || s == "--from" || s == "--to") && i + 1 < c.args.size()) rest.push_back(c.args[++i]);
  }
  range_opts ro;
  if (auto err = parse_range(rest, 0, ro); !err.empty()) return usage_error(err);
  if (!ro.positional.empty()) return usage_error("del takes one KEY, or a range: --prefix P, --from K, --to K");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  if (!ro.prefix && !ro.lo && !ro.hi) return usage_error("del needs a KEY, or a range: --prefix P, --from K, --to K");
  if (ro.lo && ro.hi && *ro.lo > *ro.hi)
    return usage_error("del: --from " + escape(*ro.lo) + " is above --to " + escape(*ro.hi));
  const keel::key_range range = ro.range();

  return with_store(c, [&](keel::any_store& store) {
    std::optional<std::uint64_t> erased;
    if (count) {
      auto n = store.run_transaction([&](keel::any_store::transaction_type& tx) -> keel::result<std::uint64_t> {
        std::uint64_t k = 0;
        auto cursor = tx.scan(range);
        for (auto it = cursor.begin(); it != cursor.end(); ++it) ++k;
        if (cursor.error()) return *cursor.error();
        if (auto r = tx.erase_range(range); !r) return r.error();
        return k;
      });
      if (!n) return op_error(n.error());
      erased = *n;
    } else if (auto r = store.erase_range(range); !r) {
      return op_error(r.error());
    }
    if (c.json)
      write_out(erased ? "{\"erased\":" + std::to_string(*erased) + "}\n" : std::string("{\"erased\":null}\n"));
    else if (erased)
      std::fprintf(stderr, "keel: erased %llu keys\n", static_cast<unsigned long long>(*erased));
    return exit_ok;
  });
}

// compact [--prefix P] [--from K] [--to K]: RocksDB CompactRange.
int cmd_compact(const cli& c) {
  range_opts ro;
  if (auto err = parse_range(c.args, 1, ro); !err.empty()) return usage_error(err);
  if (!ro.positional.empty()) return usage_error("compact takes no argument besides --prefix, --from, --to");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  if (ro.lo && ro.hi && *ro.lo > *ro.hi)
    return usage_error("compact: --from " + escape(*ro.lo) + " is above --to " + escape(*ro.hi));
  return with_store(c, [&](keel::any_store& store) {
    auto before = store.stats();
    if (!before) return op_error(before.error());
    if (auto r = store.compact(ro.range()); !r) return op_error(r.error());
    auto after = store.stats();
    if (!after) return op_error(after.error());
    if (c.json)
      std::printf("{\"size_bytes_before\":%llu,\"size_bytes_after\":%llu}\n",
                  static_cast<unsigned long long>(before->size_bytes),
                  static_cast<unsigned long long>(after->size_bytes));
    else
      std::fprintf(stderr, "keel: compacted: %llu bytes before, %llu after\n",
                   static_cast<unsigned long long>(before->size_bytes),
                   static_cast<unsigned long long>(after->size_bytes));
    return exit_ok;
  });
}

// checkpoint DIR: a consistent copy of the store, taken while it is in use.
int cmd_checkpoint(const cli& c) {
  if (c.args.size() != 2 || c.args[1].empty()) return usage_error("checkpoint takes one DIR (which must not exist)");
  const std::string& dir = c.args[1];
  return with_store(c, [&](keel::any_store& store) {
    if (auto r = store.checkpoint(dir); !r) return op_error(r.error());
    if (c.json)
      write_out("{\"checkpoint\":" + json_string(dir) + "}\n");
    else
      std::fprintf(stderr, "keel: checkpoint written to %s\n", dir.c_str());
    return exit_ok;
  });
}

int cmd_stats(const cli& c, keel::any_store& store);

int run_on_store(const cli& c) {
  const std::string& cmd = c.args[0];
  const auto& a = c.args;
  // Check arguments before opening anything.
  std::optional<std::string> key, value;
  range_opts ro;
  if (cmd == "get" || cmd == "del") {
    if (a.size() != 2) return usage_error(cmd + " takes one KEY");
    key = unescape(a[1]);
    if (!key) return usage_error("bad escape in KEY '" + a[1] + "'");
  } else if (cmd == "put") {
    if (a.size() != 3) return usage_error("put takes KEY and VALUE");
    key = unescape(a[1]);
    value = unescape(a[2]);
    if (!key || !value) return usage_error("bad escape in KEY or VALUE");
  } else if (cmd == "scan" || cmd == "count" || cmd == "export") {
    if (auto err = parse_range(a, 1, ro); !err.empty()) return usage_error(err);
    std::size_t want = cmd == "export" ? 1 : 0;
    if (ro.positional.size() != want) return usage_error(cmd + (want ? " takes one FILE" : " takes no FILE"));
    if (cmd != "scan" && (ro.reverse || ro.limit || ro.keys_only))
      return usage_error("--reverse, --limit and --keys-only are for scan");
  } else if (cmd == "import") {
    if (a.size() != 2) return usage_error("import takes one FILE");
  } else if (cmd == "stats") {
    if (a.size() != 1) return usage_error("stats takes no argument");
  } else {
    return usage_error("unknown command '" + cmd + "'");
  }

  // `import -`: stdin is copied to a temporary file before the store opens.
  stdin_spool spool;
  std::string import_file;
  if (cmd == "import") {
    auto file = dump_input(a[1], spool);
    if (!file) return dump_input_failed(file.error());
    import_file = *file;
  }

  const std::string path = db_path(c);
  const bool writes = cmd == "put" || cmd == "del" || cmd == "import";
  auto opened = open_spec(c, c.memory ? "memory:" + c.memory_file : path, writes ? access::write : access::read);
  if (!opened) return open_failed(opened.error(), path);
  keel::any_store& store = *opened;
  int rc = exit_ok;

  if (cmd == "get") {
    auto v = store.get(*key);
    if (!v) return op_error(v.error());
    if (!*v) {
      if (c.json)
        write_out("null\n");
      else
        std::fprintf(stderr, "keel: no key %s\n", escape(*key).c_str());
      rc = exit_not_found;
    } else if (c.raw) {
      write_out(**v);
    } else if (c.json) {
      write_out("{\"key\":" + json_string(*key) + ",\"value\":" + json_string(**v) + "}\n");
    } else {
      write_out(escape(**v) + "\n");
    }
  } else if (cmd == "put") {
    if (auto r = store.put(*key, *value); !r) return op_error(r.error());
  } else if (cmd == "del") {
    if (auto r = store.erase(*key); !r) return op_error(r.error());
  } else if (cmd == "scan") {
    auto cursor = store.scan(ro.range());
    std::uint64_t n = 0;
    std::string line;
    for (const auto& e : cursor) {
      if (ro.limit && n >= *ro.limit) break;
      ++n;
      if (c.json) {
        line = "{\"key\":" + json_string(e.key);
        if (!ro.keys_only) line += ",\"value\":" + json_string(e.value);
        line += "}\n";
      } else {
        line = escape(e.key);
        if (!ro.keys_only) {
          line += '\t';
          line += escape(e.value);
        }
        line += '\n';
      }
      write_out(line);
    }
    if (cursor.error()) return op_error(*cursor.error());
  } else if (cmd == "count") {
    auto cursor = store.scan(ro.range());
    std::uint64_t n = 0;
    for (auto it = cursor.begin(); it != cursor.end(); ++it) ++n;
    if (cursor.error()) return op_error(*cursor.error());
    if (c.json)
      std::printf("{\"count\":%llu}\n", static_cast<unsigned long long>(n));
    else
      std::printf("%llu\n", static_cast<unsigned long long>(n));
  } else if (cmd == "export") {
    const std::string& file = ro.positional[0];
    keel::dump_writer w;
    auto o = file == "-" ? w.open_fd(1) : w.open(file);
    if (!o) return op_error(o.error());
    progress_bar bar(c.show_progress(), "exporting");
    auto info = keel::export_to(store, w, ro.range(), bar.fn());
    bar.done();
    if (!info) return op_error(info.error());
    if (file != "-") {
      if (c.json)
        std::printf("{\"records\":%llu,\"payload_bytes\":%llu,\"file_bytes\":%llu}\n",
                    static_cast<unsigned long long>(info->records),
                    static_cast<unsigned long long>(info->payload_bytes),
                    static_cast<unsigned long long>(info->file_bytes));
      else
        std::fprintf(stderr, "keel: exported %llu records to %s (%llu bytes)\n",
                     static_cast<unsigned long long>(info->records), file.c_str(),
                     static_cast<unsigned long long>(info->file_bytes));
    }
  } else if (cmd == "import") {
    progress_bar bar(c.show_progress(), "importing");
    keel::import_options io;
    io.progress = bar.fn();
    auto info = keel::import_dump(store, import_file, io);
    bar.done();
    if (!info) return dump_error(info.error());
    if (c.json)
      std::printf("{\"records\":%llu,\"payload_bytes\":%llu}\n", static_cast<unsigned long long>(info->records),
                  static_cast<unsigned long long>(info->payload_bytes));
    else
      std::fprintf(stderr, "keel: imported %llu records from %s\n", static_cast<unsigned long long>(info->records),
                   a[1] == "-" ? "standard input" : a[1].c_str());
  } else if (cmd == "stats") {
    rc = cmd_stats(c, store);
  }
  if (auto r = store.close(); !r) return op_error(r.error());
  return rc;
}

int cmd_stats(const cli& c, keel::any_store& store) {
  auto st = store.stats();
  if (!st) return op_error(st.error());
  // (name, value, numeric)
  std::vector<std::tuple<std::string, std::string, bool>> kv;
  auto num = [&](std::string k, std::uint64_t v) { kv.emplace_back(std::move(k), std::to_string(v), true); };
  kv.emplace_back("backend", std::string(keel::to_string(st->backend)), false);
  if (auto* rocks = store.get_if<keel::RocksPolicy<keel::NativeTuning>>())
    kv.emplace_back("path", rocks->policy().path().string(), false);
  num("keys", st->keys);
  kv.emplace_back("keys_exact", st->keys_exact ? "true" : "false", true);
  num("size_bytes", st->size_bytes);
  num("puts", st->puts);
  num("gets", st->gets);
  num("erases", st->erases);
  num("writes", st->writes);
  num("contains", st->contains);
  num("batch_ops", st->batch_ops);
  num("scans", st->scans);
  num("cursor_entries", st->cursor_entries);
  num("snapshots", st->snapshots);
  num("bytes_read", st->bytes_read);
  num("bytes_written", st->bytes_written);
  for (const auto& [k, v] : st->properties) num(k, v);
  if (c.json) {
    std::string j = "{";
    for (std::size_t i = 0; i < kv.size(); ++i) {
      const auto& [k, v, numeric] = kv[i];
      j += (i ? "," : "") + json_string(k) + ":" + (numeric ? v : json_string(v));
    }
    write_out(j + "}\n");
  } else {
    for (const auto& [k, v, numeric] : kv) write_out(k + "\t" + escape(v) + "\n");
  }
  return exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
  cli c;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view s = argv[i];
    if (s == "-h" || s == "--help") {
      std::fputs(usage_text, stdout);
      return exit_ok;
    } else if (s == "--db") {
      if (++i >= argc) return usage_error("--db needs a PATH");
      c.db = argv[i];
    } else if (s.rfind("--db=", 0) == 0) {
      c.db = std::string(s.substr(5));
    } else if (s == "--memory") {
      c.memory = true;
    } else if (s == "--memory-file") {
      if (++i >= argc) return usage_error("--memory-file needs a FILE");
      c.memory = true;
      c.memory_file = argv[i];
    } else if (s == "--fallback") {
      c.fallback = true;
    } else if (s == "--json") {
      c.json = true;
    } else if (s == "--raw") {
      c.raw = true;
    } else if (s == "--progress") {
      c.progress = true;
    } else if (s == "--no-progress") {
      c.progress = false;
    } else if (s.size() > 1 && s[0] == '-' && s != "-") {
      return usage_error("unknown option " + std::string(s));
    } else {
      break;
    }
  }
  for (; i < argc; ++i) c.args.emplace_back(argv[i]);
  if (c.args.empty()) {
    std::fputs(usage_text, stderr);
    return exit_usage;
  }
  const std::string& cmd = c.args[0];
  if (cmd == "help") {
    std::fputs(usage_text, stdout);
    return exit_ok;
  }
  if (cmd == "doctor") return cmd_doctor(c);
  if (cmd == "verify") return cmd_verify(c);
  if (cmd == "migrate") return cmd_migrate(c);
  if (is_del_range(c)) return cmd_del_range(c);
  if (cmd == "compact") return cmd_compact(c);
  if (cmd == "checkpoint") return cmd_checkpoint(c);
  return run_on_store(c);
}

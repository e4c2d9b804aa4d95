// keel: the command-line tool. See `keel --help` and docs/cli.md.
//
// Where each job lives (tools/keel/):
//   main.cpp             the usage text and the dispatch to a command
//   args.hpp             options before the command, range options
//   open.hpp             opening the store (RocksDB, memory, hybrid, fallback, etcd, PostgreSQL)
//   commands_read.hpp    get, scan, count
//   ttl.hpp              ttl, and the DURATION of put --ttl (expiry, issue 29)
//   commands_write.hpp   put, del (a key or a range), compact, checkpoint
//   commands_dump.hpp    export, import, verify, migrate
//   commands_stats.hpp   stats
//   keyspaces.hpp        --keyspace (with_keyspace), keyspaces, drop-keyspace
//   commands_watch.hpp   watch
//   commands_doctor.hpp  doctor PATH, doctor etcd://... (doctor_etcd.hpp)
//   exit_codes.hpp, text.hpp, progress.hpp, stdin_spool.hpp: shared pieces
#include <cstdio>
#include <string>

#include "args.hpp"
#include "commands_doctor.hpp"
#include "commands_dump.hpp"
#include "commands_read.hpp"
#include "commands_stats.hpp"
#include "commands_watch.hpp"
#include "commands_write.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "ttl.hpp"

#ifndef KEEL_TOOL_VERSION
#define KEEL_TOOL_VERSION "(unknown version)"  // tools/meson.build passes the project's version
#endif

namespace {

const char* const usage_text = R"(usage: keel [OPTIONS] COMMAND [ARGS]

Commands:
  get KEY                 print the value of KEY (exit 1 if absent)
  put KEY VALUE           set KEY to VALUE
  put KEY -               set KEY to the bytes of standard input (exactly: no escapes,
                          a trailing newline kept), of any size
  put KEY --value-file F  set KEY to the bytes of file F (as for -)
  put ... --ttl DURATION  the key expires DURATION from now (30s, 5m, 2h, 1d,
                          500ms, 1h30m: NUMBER UNIT parts, units d h m s ms in
                          that order); a bad or zero DURATION exits 2, a backend
                          without expiry exits 5, and nothing is written
  ttl KEY                 print the time KEY has left (1h59m58s: rounded up to the
                          second, by this machine's clock; under 1 s in ms), or
                          "no ttl"; "absent" and exit 1 if absent
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
                          (memory store: DIR is a file, for --memory-file DIR;
                          hybrid store: it opens with --hybrid DIR;
                          etcd: not supported, use export or etcdctl snapshot save)
  scan [--prefix P] [--from K] [--to K] [--reverse] [--limit N] [--keys-only] [--show-ttl]
                          print entries in byte order, one per line: KEY<TAB>VALUE
                          (--show-ttl: then <TAB> and the time left, as ttl prints
                          it, or "none"; --json: "ttl_ms" and "deadline_ms")
  count [--prefix P]      print the number of keys
  watch [--prefix P] [--from K] [--to K] [--after SEQ] [--limit N] [--keys-only]
                          print every change committed to the range, one line per
                          change in commit order: SEQ<TAB>put<TAB>KEY<TAB>VALUE or
                          SEQ<TAB>erase<TAB>KEY; from now, or after SEQ (the changes
                          the store still keeps first). Runs until SIGINT/SIGTERM
                          (exit 0) or N changes (--limit). keel holds a local store
                          open, so there it shows the kept history (--after) and
                          then waits; on etcd it shows every client's changes
  export FILE|-  [--prefix P]
                          write a dump (docs/dump-format.md) of every keyspace
                          (format version 2 when the store has keyspaces other than
                          "", else 1); with -k NAME of that keyspace only (version
                          1); '-' writes to stdout
  import FILE|-           import a dump, each record into its keyspace (created if
                          missing; with -k NAME a dump of one keyspace goes into
                          NAME); a damaged or truncated file is refused
                          before anything is written; '-' reads stdin (copied to
                          a temporary file in $TMPDIR first: it is read twice).
                          It is written in batches, each atomic; on etcd at most
                          100 records and 512 KiB each (etcd's txn limits), so
                          an import that fails part way leaves the earlier ones
                          written (run it again: it only overwrites)
  verify FILE|-           check a dump's checksums and counts
  migrate SRC DST         copy every entry of store SRC into store DST, every
                          keyspace into the keyspace of the same name
  stats                   backend (hybrid: and its tier), key count, sizes, operation
                          counters, the number of keyspaces; with -k NAME: that
                          keyspace's keys and bytes
  keyspaces               one line per keyspace: NAME<TAB>KEYS<TAB>BYTES (NAME
                          escaped; the default keyspace's is empty; keys and
                          bytes of keys and values counted by a scan)
  drop-keyspace NAME --yes
                          delete the keyspace NAME and every key in it, atomically;
                          refused without --yes (exit 2); exit 1 if there is none
  doctor PATH             explain a database directory (or a hybrid store, or a
                          --memory-file FILE): exists? RocksDB? locked by whom?
                          would an open succeed? It only reads.
  doctor etcd://HOST:PORT[,HOST:PORT...]
                          explain an etcd cluster: members, leader, raft term and
                          index, database size and quota, alarms, and whether a
                          write would succeed now (checked by a txn that writes
                          nothing); exit 0 if it would, 1 if not
  doctor postgres://... | doctor --postgres CONNINFO | doctor (KEEL_POSTGRES set)
                          explain a PostgreSQL server and the store's table
                          (--table): reachable, version, primary or standby, the
                          table's shape and rows, and whether a write would succeed
                          now (checked in a transaction that is rolled back);
                          exit 0 if it would, 1 if not

Options (before or after the command; "--" ends the options, so that a KEY
or VALUE may start with '-': keel del -- -k):
  --db PATH               the RocksDB directory (default: $KEEL_DB)
  --memory                use the memory backend (as KEEL_USE_MEMORY_STORAGE=1)
  --memory-file FILE      use a memory store persisted in FILE (snapshot + write-ahead
                          log: every acknowledged write kept; FILE.lock held while open)
  --hybrid PATH           use the hybrid store at PATH: a persisted memory store that
                          moves its data to RocksDB (PATH/rocksdb) once it passes 64 MiB
                          (docs/hybrid.md; the write command or compact that finds it
                          past that moves it); stats shows its tier. It has no read-only
                          open: read commands take its lock too
  --fallback              read commands: fall back to memory when RocksDB cannot open
                          (as KEEL_FALLBACK_MEMORY=1); a write never falls back
  --etcd URL[,URL...]     use the etcd cluster at these client URLs, http://HOST:PORT
                          (as KEEL_ETCD_ENDPOINTS; docs/cluster.md); only when keel
                          is built with the etcd backend
  --etcd-prefix P         the store's key prefix in the cluster (as KEEL_ETCD_PREFIX;
                          required): stores with different prefixes never meet
  --etcd-connect-timeout MS
                          TCP connect timeout per attempt, 1 to 10000 ms (default
                          1000); also how soon an endpoint nobody listens on is
                          reported, and doctor etcd://'s
  --etcd-max-request-bytes N
                          the cluster's --max-request-bytes, 1024 to 2147483647
                          (default 1572864): import and migrate check each record
                          against it and size their batches by it
  --postgres CONNINFO     use a table of the PostgreSQL server of this libpq connection
                          string (as KEEL_POSTGRES; docs/postgres.md); only when keel
                          is built with the PostgreSQL backend
  --table NAME            that table (as KEEL_POSTGRES_TABLE; default keel); created
                          if missing, by read commands too
  -k, --keyspace NAME     the keyspace get, put, del, scan, count, ttl, compact, export,
                          import, stats and watch work on (default "": the default
                          keyspace, the store itself); NAME is escaped as a KEY
                          is, at most 255 bytes. put and import create it; the
                          others exit 1 when it does not exist
  --json                  JSON output (get, scan, count, ttl, stats, keyspaces, doctor, watch, and the
                          summaries of export, import, del with a range, compact,
                          checkpoint, drop-keyspace)
  --raw                   get: print the value's bytes exactly, no escaping, no newline
  --escape                escape every byte outside printable ASCII, UTF-8 text too
  --progress / --no-progress
                          force the progress bar on or off (default: on when stderr is a terminal)
  -h, --help              this text
  --version               the version of keel, its dump format and backends

Read commands (get, scan, count, ttl, export, stats, keyspaces, and migrate's SRC) open the
database read-only: they never create anything (a missing path, a directory
with no database in it, or a missing memory store FILE exits 3 with "no
database at PATH"), and they work
while another process has the database open (they read it as of their open,
and say so on stderr). Write commands (put, del, import, and migrate's DST)
create a missing database and say so on stderr: only the last component of
the path (a missing parent exits 3), never in a directory holding other files
(exit 3), and a write that fails before writing anything removes the store
it created. A damaged database exits 3 with the reason, --fallback or not:
keel never runs on an empty memory store in place of a database that exists.
A write command on a memory store without --memory-file is refused (exit 2:
the data would be gone when keel exits), and never falls back to memory.

The store: an option (--db, --memory, --memory-file, --hybrid, --etcd,
--etcd-prefix, --postgres) chooses it and wins over every variable; two options
naming different stores exit 2. Without one, keel::store_config::from_env("KEEL")
does: KEEL_USE_MEMORY_STORAGE (1/0, true/false, yes/no, on/off), then
KEEL_ETCD_ENDPOINTS with KEEL_ETCD_PREFIX, then KEEL_POSTGRES with
KEEL_POSTGRES_TABLE, then KEEL_DB; stderr names a store the first three chose. KEEL_FALLBACK_MEMORY works as --fallback.
SRC and DST of migrate are RocksDB directories, or memory:FILE for a memory store
persisted in FILE ('memory:' alone: not persisted), or hybrid:PATH for the hybrid
store at PATH, or etcd:PREFIX for the store PREFIX on the cluster of --etcd
('etcd:' alone: the prefix of --etcd-prefix), or postgres:TABLE for a table of
the server of --postgres ('postgres:' alone: the table of --table).

Escaping: keys and values are printed with C-style escapes so that one record is
one line: \\ for a backslash, \t \n \r, and \xHH for every other byte outside
printable ASCII (0x20-0x7e). On a UTF-8 locale a key or value that is valid
UTF-8 (and has no C1 control character) keeps its non-ASCII characters as they
are; --escape escapes them too. KEY and VALUE arguments accept the same escapes
(and \0). With --json, a key or value that is valid UTF-8 is a JSON string
("key", "value"; '"', '\' and control characters escaped), any other is its
bytes in standard base64 under "key_base64" / "value_base64".

Exit codes: 0 success; 1 get, ttl: key absent, --keyspace or drop-keyspace: no such keyspace, doctor: an open (etcd, PostgreSQL: a write) would fail now;
2 usage error; 3 the store could not be opened, doctor: no database there yet;
4 a dump was refused (damaged, truncated, not a dump); 5 another operation failed
(including a record the store cannot take, e.g. over etcd's --max-request-bytes).
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace keel_tool;
  cli c;
  if (auto rc = parse_options(argc, argv, c)) return *rc;
  if (c.help) {
    std::fputs(usage_text, stdout);
    return exit_ok;
  }
  if (c.version) {
    std::printf("keel %s (dump format %u; backends: rocksdb, memory, hybrid%s)\n", KEEL_TOOL_VERSION,
                keel::dump_version, has_etcd_backend ? ", etcd" : "");
    return exit_ok;
  }
  if (c.args.empty()) {
    std::fputs(usage_text, stderr);
    return exit_usage;
  }
  if (auto rc = check_store_options(c)) return *rc;
  const std::string& cmd = c.args[0];
  if (cmd == "help") {
    std::fputs(usage_text, stdout);
    return exit_ok;
  }
  if (c.keyspace_given && !takes_keyspace(cmd))
    return usage_error("--keyspace (-k) is for get, put, del, scan, count, ttl, compact, export, import, stats and watch; " +
                       cmd + (cmd == "drop-keyspace" ? " takes the NAME as its argument" : " does not take it"));
  if (cmd == "doctor") return cmd_doctor(c);
  if (cmd == "keyspaces") return cmd_keyspaces(c);
  if (cmd == "drop-keyspace") return cmd_drop_keyspace(c);
  if (cmd == "verify") return cmd_verify(c);
  if (cmd == "migrate") return cmd_migrate(c);
  if (is_del_range(c)) return cmd_del_range(c);
  if (cmd == "compact") return cmd_compact(c);
  if (cmd == "checkpoint") return cmd_checkpoint(c);
  if (cmd == "get") return cmd_get(c);
  if (cmd == "put") return cmd_put(c);
  if (cmd == "del") return cmd_del(c);
  if (cmd == "scan") return cmd_scan(c);
  if (cmd == "count") return cmd_count(c);
  if (cmd == "ttl") return cmd_ttl(c);
  if (cmd == "export") return cmd_export(c);
  if (cmd == "import") return cmd_import(c);
  if (cmd == "stats") return cmd_stats(c);
  if (cmd == "watch") return cmd_watch(c);
  return usage_error("unknown command '" + cmd + "'");
}

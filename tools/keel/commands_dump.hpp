// keel tool: moving data: export, import, verify (dumps,
// docs/dump-format.md) and migrate (store to store).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <keel/copy.hpp>
#include <keel/dump.hpp>
#include <keel/dump_rocksdb.hpp>  // import_dump on RocksDB: SST ingestion of sorted dumps
#include <string>
#include <utility>

#include "args.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "progress.hpp"
#include "stdin_spool.hpp"
#include "text.hpp"

namespace keel_tool {

// The size of the write_batches an import or a migrate writes into `store`.
struct batch_size {
  std::size_t records = 0;  // 0: no limit
  std::size_t bytes = 4 << 20;
};

// The library's defaults, except on etcd: one batch is one txn, which etcd
// refuses past max_txn_ops operations (128 by default) or max_request_bytes
// (1.5 MiB). A batch is closed once it reaches `bytes`, so it may exceed
// them by one record: 512 KiB leaves room for a record of up to 1 MiB. Each
// batch is atomic, the whole import is not.
inline batch_size batch_limits([[maybe_unused]] const cli_store& store) {
  batch_size b;
#if KEEL_HAS_ETCD
  if (auto* etcd = store.get_if<keel::EtcdPolicy>()) {
    const keel::etcd_options& o = etcd->policy().config();
    b.records = std::min<std::size_t>(100, o.max_txn_ops);
    b.bytes = std::min<std::size_t>(512 << 10, o.max_request_bytes / 3);
  }
#endif
  return b;
}

// `,"name":n` for a JSON line, or nothing when n is 0 (the lines of stores
// without ttl stay as they were).
inline std::string count_field(const char* name, std::uint64_t n) {
  return n ? ",\"" + std::string(name) + "\":" + std::to_string(n) : std::string();
}
// " (n of them expired ...)" for a text line, or nothing when n is 0.
inline std::string expired_note(std::uint64_t n) {
  return n ? " (" + std::to_string(n) + " of them had expired by the destination's clock: not written)" : std::string();
}

// export FILE|- [--prefix P] [--from K] [--to K]: the records of the
// keyspace of --keyspace (default ""; a missing one exits 1).
inline int cmd_export(const cli& c) {
  range_opts ro;
  if (auto err = parse_range(c.args, 1, ro, c.literal_from); !err.empty()) return usage_error(err);
  if (ro.positional.size() != 1) return usage_error("export takes one FILE");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  return with_store(c, access::read, [&](cli_store& store) {
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      const std::string& file = ro.positional[0];
      keel::dump_writer w;
      auto o = file == "-" ? w.open_fd(1) : w.open(file);
      if (!o) return op_error(o.error());
      progress_bar bar(c.show_progress(), "exporting");
      auto info = keel::export_to(target, w, ro.range(), bar.fn());
      bar.done();
      if (!info) return op_error(info.error());
      if (file != "-") {
        // Keys with a ttl carry their deadline (dump format 3); expired ones are not exported.
        if (c.json)
          std::printf("{\"records\":%llu,\"payload_bytes\":%llu,\"file_bytes\":%llu%s}\n",
                      static_cast<unsigned long long>(info->records),
                      static_cast<unsigned long long>(info->payload_bytes),
                      static_cast<unsigned long long>(info->file_bytes),
                      count_field("with_ttl", info->deadlines).c_str());
        else
          std::fprintf(stderr, "keel: exported %llu records to %s (%llu bytes%s)\n",
                       static_cast<unsigned long long>(info->records), file.c_str(),
                       static_cast<unsigned long long>(info->file_bytes),
                       info->deadlines ? ("; " + std::to_string(info->deadlines) + " with a ttl").c_str() : "");
      }
      return exit_ok;
    });
  });
}

// What the messages of an import or a verify call FILE: "" (its path) or
// "standard input" for "-".
inline std::string dump_source_name(const std::string& file) { return file == "-" ? "standard input" : ""; }

#if KEEL_HAS_ETCD
// The bytes etcd counts for a put of key and value under `prefix`, as
// EtcdPolicy estimates them against etcd_options::max_request_bytes.
inline std::size_t etcd_put_bytes(std::size_t prefix, std::string_view key, std::string_view value) {
  return prefix + key.size() + value.size() + 8;
}
#endif

// Where an import into a store other than RocksDB (keel::import_dump_batches)
// or a migrate (keel::copy) writes its batches: the store, plus a note of a
// write that failed,
// so that a write the store refused (a limit, an unreachable cluster; exit 5)
// is told apart from a refused dump (exit 4). On etcd a batch that one request
// cannot carry (a batch may pass batch_size::bytes by one record) is written
// as several requests that can, in order; each single record was checked
// against the limit before anything was written.
struct write_target {
  cli_store& store;
  // import --keyspace NAME: every put goes to this keyspace (the dump's
  // records are all in "", cmd_import checks); "": each to the keyspace its
  // op names. It exists before the first write (with_keyspace creates it),
  // as store.write() wants of the keyspaces a batch names.
  std::string into_keyspace{};
  std::size_t max_request_bytes = 0;  // 0: no limit (not etcd)
  std::size_t prefix_bytes = 0;       // etcd: the store's prefix length
  bool write_failed = false;

  // Whether the live store keeps a ttl (keel::expiry_policy): an import or a
  // migrate of keys with a deadline into one that does not is refused.
  bool takes_ttl() const { return takes_ttl_of(store); }
  template <class... Ps>
  static bool takes_ttl_of(const keel::basic_any_store<Ps...>& s) {
    return ((s.template get_if<Ps>() != nullptr && keel::expiry_policy<Ps>) || ...);
  }

  // On etcd: the request limit of `s` (this target's store).
  void limit_to([[maybe_unused]] const cli_store& s) {
#if KEEL_HAS_ETCD
    if (auto* etcd = s.get_if<keel::EtcdPolicy>()) {
      max_request_bytes = etcd->policy().config().max_request_bytes;
      prefix_bytes = etcd->policy().config().prefix.size();
    }
#endif
  }

  keel::result<void> write(const keel::write_batch& batch) {
    auto r = max_request_bytes == 0 && into_keyspace.empty() ? store.write(batch) : write_split(batch);
    if (!r) write_failed = true;
    return r;
  }

  // The store's keyspace `name`, created if missing: keel::copy and
  // keel::import_dump_batches create the keyspaces of the source or dump
  // through it before the first write.
  auto keyspace(std::string_view name) { return store.keyspace(name); }

 private:
  // The batch's puts, into `into_keyspace` (or each op's own), and on etcd as
  // requests that fit.
  keel::result<void> write_split(const keel::write_batch& batch) {
    keel::write_batch part;
    [[maybe_unused]] std::size_t bytes = 0;
    for (const auto& op : batch) {  // an import or a copy writes puts only
#if KEEL_HAS_ETCD
      const std::size_t n = etcd_put_bytes(prefix_bytes, op.key, op.value);
      if (max_request_bytes != 0 && !part.empty() && bytes + n > max_request_bytes) {
        if (auto r = store.write(part); !r) return r;
        part.clear();
        bytes = 0;
      }
      bytes += n;
#endif
      keel::put_options o;  // an imported or copied deadline travels as the op's ttl
      if (op.ttl.count() != 0) o.ttl = op.ttl;
      part.put(keel::keyspace_name(into_keyspace.empty() ? op.keyspace : std::string_view(into_keyspace)), op.key,
               op.value, o);
    }
    if (!part.empty()) return store.write(part);
    return {};
  }
};

// import FILE|-: verifies the whole dump, then writes it in batches.
inline int cmd_import(const cli& c) {
  if (c.args.size() != 2) return usage_error("import takes one FILE");
  // `import -`: stdin is copied to a temporary file before the store opens.
  stdin_spool spool;
  auto file = dump_input(c.args[1], spool);
  if (!file) return dump_input_failed(file.error());
  const std::string import_file = *file;
  const std::string source_name = dump_source_name(c.args[1]);
  std::uint64_t deadlines = 0;  // records of the dump with a deadline (format 3)
  // The dump is verified before the store is opened, so that a file that is
  // not a dump, a damaged or a missing one creates no store (keel never
  // removes one it created; with_store()).
  const auto verify_first = [&] {
    auto v = keel::verify_dump(import_file, {}, source_name);
    if (!v) return dump_error(v.error());
    deadlines = v->deadlines;
    // import -k NAME takes a dump of one keyspace (export -k, or a dump of a
    // store without others) into NAME; a dump of several keeps each record
    // in its own keyspace, so NAME would be ambiguous.
    if (!c.keyspace.empty() && !(v->keyspaces.size() == 1 && v->keyspaces[0].empty())) {
      std::string names;
      for (const auto& n : v->keyspaces) names += (names.empty() ? "'" : ", '") + escape(n, c.keep_utf8) + "'";
      return usage_error("import --keyspace: " + (c.args[1] == "-" ? std::string("the dump on standard input") : "'" + c.args[1] + "'") +
                         " holds the keyspaces " + names +
                         "; import it without --keyspace (each record goes to its own keyspace), or export one "
                         "keyspace with export -k NAME");
    }
    return exit_ok;
  };
  return with_store(c, access::write, [&](cli_store& store) {
    progress_bar bar(c.show_progress(), "importing");
    keel::import_options io;
    io.progress = bar.fn();
    const batch_size limits = batch_limits(store);
    io.batch_bytes = limits.bytes;
    io.batch_records = limits.records;
    io.source_name = source_name;
    write_target target{store};
    target.limit_to(store);
    if (!c.keyspace.empty()) {  // create it now (a batch may only name keyspaces that exist)
      if (const int rc = with_keyspace(c, store, keyspace_use::create, [](auto&) { return exit_ok; }); rc != exit_ok)
        return rc;
      target.into_keyspace = c.keyspace;
    }
    // A record the store cannot take (exit 5, not a bad dump): too large for
    // etcd, or a deadline for a store without expiry (the import refuses it).
    bool record_refused = deadlines != 0 && !target.takes_ttl();
#if KEEL_HAS_ETCD
    if (auto* etcd = store.get_if<keel::EtcdPolicy>()) {
      const keel::etcd_options& o = etcd->policy().config();
      // The limit checked: the one --etcd-max-request-bytes gave, else etcd's default.
      const std::string limit_named =
          c.etcd_max_request_bytes
              ? "the limit of " + std::to_string(o.max_request_bytes) +
                    " bytes of --etcd-max-request-bytes (the cluster's --max-request-bytes)"
              : "etcd's limit of " + std::to_string(o.max_request_bytes) +
                    " bytes (its --max-request-bytes, default 1.5 MiB; a cluster that runs with more: tell keel "
                    "with --etcd-max-request-bytes N)";
      io.check_record = [&, limit_named](std::uint64_t index, std::string_view key,
                            std::string_view value) -> std::optional<keel::error> {
        const std::size_t n = etcd_put_bytes(o.prefix.size(), key, value);
        if (n <= o.max_request_bytes) return std::nullopt;
        record_refused = true;
        return keel::error(
            keel::errc::invalid_argument,
            "record " + std::to_string(index + 1) + " of the dump (key '" + escape(key) + "', " +
                std::to_string(value.size()) + " bytes of value) is larger than etcd takes in one request: about " +
                std::to_string(n) + " bytes with the prefix, over " + limit_named +
                "; nothing was imported. Keep values this large out of etcd, or split them");
      };
    }
#endif
    io.skip_verify = !io.check_record;  // verified above; etcd's record check runs in the verification pass
    keel::result<keel::dump_info> info =
        store.get_if<keel::RocksPolicy<keel::NativeTuning>>() && target.into_keyspace.empty()
            ? keel::import_dump(store, import_file, io)
                                                              : keel::import_dump_batches(target, import_file, io);
    bar.done();
    if (!info) return record_refused || target.write_failed ? op_error(info.error()) : dump_error(info.error());
    if (c.json)
      std::printf("{\"records\":%llu,\"payload_bytes\":%llu%s}\n", static_cast<unsigned long long>(info->records),
                  static_cast<unsigned long long>(info->payload_bytes),
                  count_field("expired_skipped", info->expired_skipped).c_str());
    else
      std::fprintf(stderr, "keel: imported %llu records from %s%s\n", static_cast<unsigned long long>(info->records),
                   c.args[1] == "-" ? "standard input" : c.args[1].c_str(), expired_note(info->expired_skipped).c_str());
    return exit_ok;
  }, verify_first);
}

// verify FILE|-: checks a dump's checksums and counts; opens no store.
inline int cmd_verify(const cli& c) {
  if (c.args.size() != 2) return usage_error("verify takes one FILE");
  stdin_spool spool;
  auto file = dump_input(c.args[1], spool);
  if (!file) return dump_input_failed(file.error());
  progress_bar bar(c.show_progress(), "verifying");
  auto info = keel::verify_dump(*file, bar.fn(), dump_source_name(c.args[1]));
  bar.done();
  if (!info) return dump_error(info.error());
  // The dump's keyspaces (version 2; a version-1 dump holds "" only): in
  // JSON their names (as keys are: "name" or "name_base64"), in text their
  // number when there are others than "".
  std::string keyspaces_json;
  for (const auto& n : info->keyspaces) keyspaces_json += (keyspaces_json.empty() ? "{" : ",{") + json_bytes_field("name", n) + "}";
  if (c.json)
    std::printf(
        "{\"records\":%llu,\"payload_bytes\":%llu,\"file_bytes\":%llu,\"sorted\":%s,\"version\":%u,\"keyspaces\":[%s]}\n",
        static_cast<unsigned long long>(info->records), static_cast<unsigned long long>(info->payload_bytes),
        static_cast<unsigned long long>(info->file_bytes), info->sorted ? "true" : "false", info->version,
        keyspaces_json.c_str());
  else if (info->keyspaces.size() > 1)
    std::printf("ok: %llu records, %llu bytes of keys and values, format version %u, %zu keyspaces\n",
                static_cast<unsigned long long>(info->records), static_cast<unsigned long long>(info->payload_bytes),
                info->version, info->keyspaces.size());
  else
    std::printf("ok: %llu records, %llu bytes of keys and values, format version %u\n",
                static_cast<unsigned long long>(info->records), static_cast<unsigned long long>(info->payload_bytes),
                info->version);
  return exit_ok;
}

// What a migrate SRC or DST names, for telling whether both name one store:
// the kind ("memory", "hybrid", "etcd", "rocksdb") and the path or prefix
// ("" for a memory store that is not persisted: each is a store of its own).
inline std::pair<std::string, std::string> store_identity(const cli& c, const std::string& spec) {
  namespace fs = std::filesystem;
  auto canonical = [](const std::string& p) -> std::string {
    if (p.empty()) return p;
    std::error_code ec;
    const fs::path a = fs::absolute(p, ec);
    if (ec) return fs::path(p).lexically_normal().string();
    const fs::path w = fs::weakly_canonical(a, ec);
    return (ec ? a.lexically_normal() : w).string();
  };
  if (spec == "memory" || spec.rfind("memory:", 0) == 0) {
    const std::string file = spec.size() > 7 ? spec.substr(7) : c.memory_file;
    return {"memory", file.empty() ? std::string() : canonical(file)};
  }
  if (spec.rfind("hybrid:", 0) == 0) return {"hybrid", canonical(spec.substr(7))};
  if (spec.rfind("etcd:", 0) == 0) {
    std::string prefix = spec.substr(5);
    if (prefix.empty()) prefix = !c.etcd_prefix.empty() ? c.etcd_prefix : std::getenv("KEEL_ETCD_PREFIX") ? std::getenv("KEEL_ETCD_PREFIX") : "";
    return {"etcd", "prefix:" + prefix};
  }
  if (spec.rfind("postgres:", 0) == 0) {
    std::string table = spec.substr(9);
    if (table.empty()) table = !c.table.empty() ? c.table : std::getenv("KEEL_POSTGRES_TABLE") ? std::getenv("KEEL_POSTGRES_TABLE") : "keel";
    return {"postgres", "table:" + table};
  }
  std::string p = canonical(spec);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return {"rocksdb", p};
}

// migrate SRC DST: copies every entry of SRC into DST (open_spec() says what
// SRC and DST may name). SRC and DST naming one store is a usage error (exit
// 2), as is a DST that is a memory store not persisted (the copy would be
// gone when keel exits). SRC is opened first: a SRC that cannot open creates
// no DST. A DST that migrate created stays if the copy fails later.
inline int cmd_migrate(const cli& c) {
  if (c.args.size() != 3) return usage_error("migrate takes SRC and DST");
  const auto src_id = store_identity(c, c.args[1]), dst_id = store_identity(c, c.args[2]);
  if (src_id == dst_id && !(src_id.first == "memory" && src_id.second.empty()))
    return usage_error("migrate: SRC '" + c.args[1] + "' and DST '" + c.args[2] +
                       "' are the same store; a migrate copies one store into another");
  if (dst_id.first == "memory" && dst_id.second.empty())
    return refuse_forgetful_write("migrate", "DST '" + c.args[2] + "'");
  std::string src_target = c.args[1], dst_target = c.args[2];
  auto src = open_spec(c, c.args[1], access::read, src_target);
  if (!src) return open_failed(src.error(), src_target);
  auto dst = open_spec(c, c.args[2], access::write, dst_target);
  if (!dst) return open_failed(dst.error(), dst_target);
  const bool was_in_memory = hybrid_in_memory(*dst);
  progress_bar bar(c.show_progress(), "migrating");
  keel::copy_options co;
  co.progress = bar.fn();
  const batch_size limits = batch_limits(*dst);
  co.batch_bytes = limits.bytes;
  co.batch_records = limits.records;
  write_target target{*dst};
  target.limit_to(*dst);
  auto n = keel::copy(*src, target, co);
  bar.done();
  if (!n) {
    const int rc = op_error(n.error());
    (void)dst->close();
    return rc;
  }
  move_hybrid_if_due(*dst, was_in_memory);
  if (auto r = dst->close(); !r) return op_error(r.error());
  if (c.json)
    std::printf("{\"records\":%llu,\"payload_bytes\":%llu%s}\n", static_cast<unsigned long long>(n->records),
                static_cast<unsigned long long>(n->payload_bytes),
                count_field("expired_skipped", n->expired_skipped).c_str());
  else
    std::fprintf(stderr, "keel: copied %llu records (%llu bytes of keys and values)%s\n",
                 static_cast<unsigned long long>(n->records), static_cast<unsigned long long>(n->payload_bytes),
                 expired_note(n->expired_skipped).c_str());
  return exit_ok;
}

}  // namespace keel_tool

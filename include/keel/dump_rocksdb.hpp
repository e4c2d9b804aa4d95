// keel: importing a dump into RocksDB through SST files.
//
// When a dump's keys are strictly ascending (every dump written by
// export_dump() from a store is), import_dump() on a RocksDB store writes the
// records into SST files with rocksdb::SstFileWriter and adds them all with
// one DB::IngestExternalFile call: no WAL, no memtable, no flush, and the
// ingestion is atomic (readers see all the records or none). Measured faster
// than write batches (docs/dump-format.md, "Throughput"). Unsorted dumps go
// through write batches, and so do dumps with keyspaces other than ""
// (version 2): one column family per keyspace, written by cross-keyspace
// batches (keel does not hand out its column family handles for an
// ingestion into them yet), and so do dumps with deadlines (a value with a
// deadline is stored with keel's expiry header, rocksdb/expiry.hpp).
//
// The SST files are written to a temporary directory inside the database
// directory ("<db>/keel-import-<pid>"), so that ingestion can move (hard
// link) them; it is removed afterwards, whatever happens.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_writer.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "any_store.hpp"
#include "rocksdb/errors.hpp"
#include "dump.hpp"
#include "rocksdb.hpp"

namespace keel {

struct sst_import_options {
  // Bytes of keys and values per SST file.
  std::uint64_t file_bytes = 256ull << 20;
};

// Imports a sorted dump into a RocksDB store through SST files; unsorted dumps
// fall back to write batches. Verification pass first, as import_dump().
template <class Tuning>
result<dump_info> import_dump(basic_store<RocksPolicy<Tuning>>& store, const std::filesystem::path& path,
                              const import_options& opts = {}, const sst_import_options& sst = {}) {
  namespace fs = std::filesystem;
  auto v = detail::verify_dump_records(path, {}, opts.source_name, opts.check_record);
  if (!v) return std::move(v).error();
  import_options rest = opts;
  rest.skip_verify = true;
  const bool default_only = v->keyspaces.size() == 1 && v->keyspaces[0].empty();
  if (!v->sorted || v->records == 0 || !default_only || v->deadlines != 0) {
    return import_dump_batches(store, path, rest);
  }
  auto db_options = store.policy().with_db([](rocksdb::DB& db) { return db.GetOptions(); });
  if (!db_options) return std::move(db_options).error();

  const fs::path& db_path = store.policy().path();
  fs::path tmp = db_path / ("keel-import-" + std::to_string(detail::current_process_id()));
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return detail::errno_error(ec.value(), "cannot create '" + tmp.string() + "'");
  struct cleanup {
    fs::path dir;
    ~cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } remove_tmp{tmp};

  dump_reader r;
  if (auto o = r.open(path, opts.source_name); !o) return o.error();
  progress_info p;
  p.total_records = v->records;
  p.total_bytes = r.file_size();
  detail::progress_throttle t{opts.progress};

  std::vector<std::string> files;
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), *db_options);
  bool writer_open = false;
  std::uint64_t in_file = 0;
  auto finish_file = [&]() -> result<void> {
    if (!writer_open) return {};
    writer_open = false;
    rocksdb::Status s = writer.Finish();
    if (!s.ok()) return detail::rocks_op_error(s, "import (SST write)", db_path);
    return {};
  };
  for (;;) {
    auto more = r.next();
    if (!more) return std::move(more).error();
    if (!*more) break;
    if (writer_open && in_file >= sst.file_bytes) {
      if (auto f = finish_file(); !f) return f.error();
    }
    if (!writer_open) {
      files.push_back((tmp / ("part-" + std::to_string(files.size()) + ".sst")).string());
      rocksdb::Status s = writer.Open(files.back());
      if (!s.ok()) return detail::rocks_op_error(s, "import (SST open)", db_path);
      writer_open = true;
      in_file = 0;
    }
    rocksdb::Status s =
        writer.Put(rocksdb::Slice(r.key().data(), r.key().size()), rocksdb::Slice(r.value().data(), r.value().size()));
    if (!s.ok()) return detail::rocks_op_error(s, "import (SST put)", db_path);
    in_file += r.key().size() + r.value().size();
    p.records = r.records_read();
    p.bytes = r.offset();
    t.tick(p);
  }
  if (auto f = finish_file(); !f) return f.error();

  rocksdb::IngestExternalFileOptions io;
  io.move_files = true;
  auto ingested = store.policy().with_db([&](rocksdb::DB& db) { return db.IngestExternalFile(files, io); });
  if (!ingested) return std::move(ingested).error();
  if (!ingested->ok()) return detail::rocks_op_error(*ingested, "import (ingest)", db_path);
  p.bytes = r.offset();
  t.tick(p, true);
  return r.info();
}

// any_store: the SST path when the store is RocksDB.
template <class... Policies>
result<dump_info> import_dump(basic_any_store<Policies...>& store, const std::filesystem::path& path,
                              const import_options& opts = {}) {
  if (auto* rocks = store.template get_if<RocksPolicy<NativeTuning>>()) return import_dump(*rocks, path, opts);
  return import_dump_batches(store, path, opts);
}

}  // namespace keel

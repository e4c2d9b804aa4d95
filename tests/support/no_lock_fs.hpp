// Test support: a filesystem whose locks always fail like NFS without lockd:
// ENOLCK, with the exact message RocksDB's posix filesystem gives.
#pragma once

#include <rocksdb/file_system.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace keel::test {

class no_lock_fs : public rocksdb::FileSystemWrapper {
 public:
  explicit no_lock_fs(std::shared_ptr<rocksdb::FileSystem> target) : FileSystemWrapper(std::move(target)) {}
  const char* Name() const override { return "no_lock_fs"; }
  rocksdb::IOStatus LockFile(const std::string& fname, const rocksdb::IOOptions&, rocksdb::FileLock** lock,
                             rocksdb::IODebugContext*) override {
    *lock = nullptr;
    return rocksdb::IOStatus::IOError("While lock file: " + fname, std::strerror(ENOLCK));
  }
};

}  // namespace keel::test

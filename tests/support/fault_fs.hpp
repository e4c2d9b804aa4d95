// tests/support/fault_fs.hpp - a rocksdb::FileSystemWrapper that injects
// write faults on demand (design/rocksdb-facts.md, "Fault injection with the
// public headers"). Plug it in with
//   auto fs = std::make_shared<fault_fs>(rocksdb::FileSystem::Default());
//   std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
//   options.env = env.get();   // the Env must outlive the store
// and switch faults with fs->set(fault::..., errno_value) / fs->clear().
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

namespace keel::test {

enum class fault : int {
  none,
  append,          // both FSWritableFile::Append overloads (and PositionedAppend)
  sync,            // FSWritableFile::Sync, Fsync and RangeSync
  new_writable,    // FileSystem::NewWritableFile (and Reopen/Reuse)
};

class fault_fs : public rocksdb::FileSystemWrapper {
 public:
  explicit fault_fs(std::shared_ptr<rocksdb::FileSystem> target) : FileSystemWrapper(std::move(target)) {}
  const char* Name() const override { return "keel_fault_fs"; }

  // Makes `what` fail with `err` (ENOSPC or EIO) until clear().
  void set(fault what, int err) {
    errno_.store(err);
    fault_.store(static_cast<int>(what));
  }
  void clear() { fault_.store(static_cast<int>(fault::none)); }
  // How many calls failed because of an injected fault.
  long injected() const { return injected_.load(); }

  // The error for `what` if it is the active fault.
  rocksdb::IOStatus check(fault what, const std::string& where) {
    if (fault_.load() != static_cast<int>(what)) return rocksdb::IOStatus::OK();
    injected_.fetch_add(1);
    const int err = errno_.load();
    if (err == ENOSPC) return rocksdb::IOStatus::NoSpace(where, std::strerror(err));
    return rocksdb::IOStatus::IOError(where, std::strerror(err));
  }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (auto s = check(fault::new_writable, "While open a file for appending: " + fname); !s.ok()) return s;
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = target()->NewWritableFile(fname, opts, &file, dbg);
    if (s.ok()) result->reset(new file_wrapper(std::move(file), this, fname));
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    if (auto s = check(fault::new_writable, "While reopen a file for appending: " + fname); !s.ok()) return s;
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = target()->ReopenWritableFile(fname, opts, &file, dbg);
    if (s.ok()) result->reset(new file_wrapper(std::move(file), this, fname));
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    if (auto s = check(fault::new_writable, "While reuse a file for appending: " + fname); !s.ok()) return s;
    std::unique_ptr<rocksdb::FSWritableFile> file;
    auto s = target()->ReuseWritableFile(fname, old_fname, opts, &file, dbg);
    if (s.ok()) result->reset(new file_wrapper(std::move(file), this, fname));
    return s;
  }

 private:
  class file_wrapper : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    file_wrapper(std::unique_ptr<rocksdb::FSWritableFile> f, fault_fs* fs, std::string name)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->check(fault::append, "While appending to file: " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Append(data, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->check(fault::append, "While appending to file: " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Append(data, o, info, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->check(fault::append, "While pwrite to file: " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->check(fault::sync, "While fdatasync: " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->check(fault::sync, "While fsync: " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }
    rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& o,
                                rocksdb::IODebugContext* dbg) override {
      if (auto s = fs_->check(fault::sync, "While sync_file_range: " + name_); !s.ok()) return s;
      return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, o, dbg);
    }

   private:
    fault_fs* fs_;
    std::string name_;
  };

  std::atomic<int> fault_{static_cast<int>(fault::none)};
  std::atomic<int> errno_{EIO};
  std::atomic<long> injected_{0};
};

}  // namespace keel::test

// tests/lock_holder.cpp - helper process for cross-process LOCK tests.
// Uses raw RocksDB only (no keel), so it behaves like any foreign holder.
//
//   lock_holder DB_PATH
//       open (create_if_missing), print "ready <pid>", then block on stdin;
//       on EOF or a line "quit": Close(), delete, exit 0. A line "put KEY
//       VALUE" (no spaces inside KEY) writes and prints "ok" (or "error ...").
//       Open failure: print "error <status>", exit 1.
//   lock_holder --probe DB_PATH
//       open, print "opened" or "error <status>", close; exit 0 / 1.
//   lock_holder --drop-privileges UID DB_PATH
//       setgroups({}), setgid(UID), setuid(UID), then --probe DB_PATH.
//       Failure to drop: print "error drop-privileges: <strerror>", exit 2.
// Bad usage: message on stderr, exit 64.
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <grp.h>
#include <sys/types.h>
#include <unistd.h>

namespace {

rocksdb::DB* open_db(const std::string& path) {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
    if (!s.ok()) {
        std::cout << "error " << s.ToString() << std::endl;
        return nullptr;
    }
    return db;
}

void close_db(rocksdb::DB* db) {
    rocksdb::Status s = db->Close();
    if (!s.ok()) std::cerr << "lock_holder: Close: " << s.ToString() << std::endl;
    delete db;
}

int probe(const std::string& path) {
    rocksdb::DB* db = open_db(path);
    if (db == nullptr) return 1;
    std::cout << "opened" << std::endl;
    close_db(db);
    return 0;
}

int hold(const std::string& path) {
    rocksdb::DB* db = open_db(path);
    if (db == nullptr) return 1;
    std::cout << "ready " << static_cast<long>(::getpid()) << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line == "quit") break;
        if (line.rfind("put ", 0) == 0) {
            std::string const rest = line.substr(4);
            std::size_t const space = rest.find(' ');
            std::string const key = rest.substr(0, space);
            std::string const value = space == std::string::npos ? std::string() : rest.substr(space + 1);
            rocksdb::Status const s = db->Put(rocksdb::WriteOptions(), key, value);
            std::cout << (s.ok() ? std::string("ok") : "error " + s.ToString()) << std::endl;
        }
    }
    close_db(db);
    return 0;
}

int drop_privileges(const char* uid_text) {
    char* end = nullptr;
    errno = 0;
    unsigned long const v = std::strtoul(uid_text, &end, 10);
    if (errno != 0 || end == uid_text || *end != '\0') {
        std::cout << "error drop-privileges: bad uid " << uid_text << std::endl;
        return 2;
    }
    auto const id = static_cast<uid_t>(v);
    if (::setgroups(0, nullptr) != 0 && errno != EPERM) {
        std::cout << "error drop-privileges: setgroups: " << std::strerror(errno) << std::endl;
        return 2;
    }
    if (::setgid(static_cast<gid_t>(id)) != 0) {
        std::cout << "error drop-privileges: setgid: " << std::strerror(errno) << std::endl;
        return 2;
    }
    if (::setuid(id) != 0) {
        std::cout << "error drop-privileges: setuid: " << std::strerror(errno) << std::endl;
        return 2;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string const mode = argc > 1 ? argv[1] : "";
    if (argc == 2 && mode.rfind("--", 0) != 0) return hold(argv[1]);
    if (argc == 3 && mode == "--probe") return probe(argv[2]);
    if (argc == 4 && mode == "--drop-privileges") {
        if (int const rc = drop_privileges(argv[2]); rc != 0) return rc;
        return probe(argv[3]);
    }
    std::cerr << "usage: lock_holder DB_PATH | --probe DB_PATH | --drop-privileges UID DB_PATH\n";
    return 64;
}

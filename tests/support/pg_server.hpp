// Test support: a real PostgreSQL server for the PostgreSQL backend's tests.
//
//   keel::test::pg_server server;       // initdb + start; waits until it serves
//   server.conninfo();                  // "host=<dir> port=5432 user=postgres dbname=postgres"
//   server.kill();                      // SIGKILL (the primary dies)
//   keel::test::pg_server standby(server, {});   // pg_basebackup -R, streaming
//   standby.query("SELECT pg_promote()");        // the standby becomes primary
//
// Binaries from Debian's postgresql package (/usr/lib/postgresql/<ver>/bin,
// the newest found; KEEL_TEST_PG_BIN overrides the directory). The cluster is
// made by initdb in a fresh temporary directory (on /dev/shm when it exists)
// and the server listens on a Unix socket in that directory only
// (listen_addresses = '': no TCP at all). PostgreSQL refuses to run as root:
// as root, the directory is given to the unprivileged `postgres` user (the
// package creates it) and initdb and the server run as that user (the child
// drops to it before exec). The server has PR_SET_PDEATHSIG = SIGKILL (set
// after the user change, which would clear it), so a crashed test binary
// leaves no server behind; the destructor stops it by its PID (SIGINT, a
// fast shutdown; SIGKILL after 10 s), also when a test failed. Readiness is
// polled (a connection succeeds), never slept for. Not thread-safe; one owner.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.hpp"

namespace keel::test {

class pg_server {
 public:
  // The directory of initdb and postgres, or "" when PostgreSQL is not installed.
  static std::string bin_dir() {
    if (const char* e = std::getenv("KEEL_TEST_PG_BIN"); e && *e) return e;
    std::string best;
    int best_version = -1;
    std::error_code ec;
    for (std::filesystem::directory_iterator it("/usr/lib/postgresql", ec), end; !ec && it != end; it.increment(ec)) {
      const std::string v = it->path().filename().string();
      const int n = std::atoi(v.c_str());
      if (n > best_version && ::access((it->path() / "bin" / "postgres").c_str(), X_OK) == 0) {
        best_version = n;
        best = (it->path() / "bin").string();
      }
    }
    return best;
  }
  // Why the server cannot run here, or nullopt when it can.
  static std::optional<std::string> unavailable() {
    const std::string bin = bin_dir();
    if (bin.empty()) return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin; Debian package postgresql)";
    if (::access((bin + "/initdb").c_str(), X_OK) != 0) return "no initdb in " + bin;
    if (::geteuid() == 0 && ::getpwnam("postgres") == nullptr)
      return "running as root and there is no 'postgres' user to run the server as";
    return std::nullopt;
  }

  // initdb + start. `extra`: more "name=value" server settings (later ones win).
  explicit pg_server(std::vector<std::string> extra = {}) : pg_server(nullptr, std::move(extra)) {}
  // A hot standby of `primary`, streaming from it: pg_basebackup -R (which
  // writes primary_conninfo and standby.signal), then start.
  pg_server(const pg_server& primary, std::vector<std::string> extra) : pg_server(&primary, std::move(extra)) {}

 private:
  pg_server(const pg_server* primary, std::vector<std::string> extra) : dir_(make_dir()) {
    if (auto why = unavailable()) throw std::runtime_error("pg_server: " + *why);
    setup_user();
    data_ = dir_.path() / "data";
    give_to_server_user(dir_.path());
    if (primary) {
      run_as_server_user({bin_dir() + "/pg_basebackup", "-D", data_.string(), "-R", "-X", "stream", "--no-sync",
                          "-d", primary->conninfo("application_name=standby")},
                         dir_.path() / "basebackup.log");
    } else {
      run_as_server_user({bin_dir() + "/initdb", "-D", data_.string(), "-U", "postgres", "-A", "trust", "--no-sync",
                          "-E", "UTF8", "--locale=C"},
                         dir_.path() / "initdb.log");
    }
    settings_ = {"listen_addresses=", "unix_socket_directories=" + dir_.path().string(), "port=5432",
                 "fsync=off", "full_page_writes=off", "synchronous_commit=off", "max_connections=200",
                 "shared_buffers=16MB", "max_wal_senders=4", "wal_level=replica", "max_prepared_transactions=0",
                 "log_min_messages=warning"};
    for (auto& e : extra) settings_.push_back(std::move(e));
    start();
  }

 public:
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;
  ~pg_server() { stop(); }

  std::string conninfo(const std::string& more = "") const {
    return "host=" + dir_.path().string() + " port=5432 user=postgres dbname=postgres" + (more.empty() ? "" : " " + more);
  }
  const std::filesystem::path& dir() const noexcept { return dir_.path(); }
  pid_t pid() const noexcept { return pid_; }

  // The whole server dies at once, as with its machine: SIGKILL to the
  // postmaster and to every process it started (a backend outlives a killed
  // postmaster for a moment and would still answer its client); returns
  // when they are all gone.
  void kill() {
    if (pid_ <= 0) return;
    const std::vector<pid_t> children = children_of(pid_);
    signal_and_reap(SIGKILL);
    for (pid_t c : children) ::kill(c, SIGKILL);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (pid_t c : children) {
      while (alive_not_zombie(c) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling the exit (not our child: no waitpid)
    }
  }
  // A fast shutdown (SIGINT), reaped.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    for (int i = 0; i < 1000; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the exit
    }
    signal_and_reap(SIGKILL);
  }
  // Starts the server on its data directory and waits until it serves.
  void start() {
    std::vector<std::string> args = {bin_dir() + "/postgres", "-D", data_.string()};
    for (const auto& s : settings_) {
      args.push_back("-c");
      args.push_back(s);
    }
    pid_ = spawn(args, dir_.path() / "server.log", /*die_with_parent=*/true);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("pg_server: postgres exited: " + log_tail());
      }
      PGconn* c = PQconnectdb(conninfo("connect_timeout=2").c_str());
      const bool ok = PQstatus(c) == CONNECTION_OK;
      PQfinish(c);
      if (ok) return;
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("pg_server: postgres did not accept connections within 60 s: " + log_tail());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval
    }
  }

  // Runs SQL as the superuser and returns the first column of the first row
  // ("" when none). Throws on failure.
  std::string query(const std::string& sql) const {
    PGconn* c = PQconnectdb(conninfo().c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      std::string m = PQerrorMessage(c);
      PQfinish(c);
      throw std::runtime_error("pg_server: connect: " + m);
    }
    PGresult* r = PQexec(c, sql.c_str());
    const auto st = PQresultStatus(r);
    std::string out, err = PQresultErrorMessage(r);
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
    PQclear(r);
    PQfinish(c);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) throw std::runtime_error("pg_server: " + sql + ": " + err);
    return out;
  }

  std::string log_tail(std::size_t bytes = 3000) const {
    std::ifstream in(dir_.path() / "server.log");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > bytes ? s.substr(s.size() - bytes) : s;
  }

 private:
  static temp_dir make_dir() {
    if (!std::getenv("TMPDIR") && std::filesystem::is_directory("/dev/shm") && ::access("/dev/shm", W_OK) == 0)
      return temp_dir("/dev/shm");
    return temp_dir();
  }
  void setup_user() {
    if (::geteuid() != 0) return;  // not root: the server runs as this user
    const passwd* pw = ::getpwnam("postgres");
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    as_other_user_ = true;
  }
  void give_to_server_user(const std::filesystem::path& p) const {
    if (as_other_user_ && ::chown(p.c_str(), uid_, gid_) != 0)
      throw std::runtime_error("pg_server: cannot chown " + p.string() + " to postgres");
  }

  // fork + exec, as the server user when running as root. Only
  // async-signal-safe calls between fork and exec.
  pid_t spawn(std::vector<std::string>& args, const std::filesystem::path& log, bool die_with_parent) const {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("pg_server: cannot create " + log.string());
    if (as_other_user_ && ::fchown(log_fd, uid_, gid_) != 0) {
      ::close(log_fd);
      throw std::runtime_error("pg_server: cannot chown " + log.string());
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      throw std::runtime_error("pg_server: fork failed");
    }
    if (pid == 0) {
      if (as_other_user_) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0) ::_exit(126);
      }
      // After the user change (a change of credentials clears it).
      if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    return pid;
  }
  void run_as_server_user(std::vector<std::string> args, const std::filesystem::path& log) const {
    const pid_t pid = spawn(args, log, /*die_with_parent=*/true);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::ifstream in(log);
      std::stringstream ss;
      ss << in.rdbuf();
      throw std::runtime_error("pg_server: " + args[0] + " failed: " + ss.str());
    }
  }
  // Processes whose parent is `parent` (from /proc/PID/stat).
  static std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(it->path() / "stat");
      std::string line;
      std::getline(in, line);
      const auto close = line.rfind(')');  // the command may contain spaces and parentheses
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state = 0;
      long ppid = 0;
      rest >> state >> ppid;
      if (ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
    }
    return out;
  }
  static bool alive_not_zombie(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return false;
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
  }

  void signal_and_reap(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  temp_dir dir_;  // destroyed last: after the server is stopped
  std::filesystem::path data_;
  std::vector<std::string> settings_;
  bool as_other_user_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  pid_t pid_ = -1;
};

}  // namespace keel::test

// Test support: real etcd processes for the cluster backend's tests.
//
//   keel::test::etcd_cluster cluster(3);          // starts 3 members, waits until they serve
//   cluster.endpoints();                          // {"http://127.0.0.1:P1", ...}
//   cluster.kill(cluster.leader());               // SIGKILL one member
//   cluster.start(i);                             // restart it on its data directory
//
// Members exec /usr/bin/etcd (KEEL_TEST_ETCD overrides the path) listening on
// 127.0.0.1 only, on ports found free by binding port 0 (a start that loses a
// port race is retried on new ports). Data directories live in a fresh
// temporary directory, on /dev/shm when it exists (fsync on a disk would slow
// every write) and removed afterwards. Readiness is polled (a linearizable
// read through the gateway succeeds on every member), never slept for.
// Every process is stopped by its PID in the destructor, also when a test
// fails; each child also has PR_SET_PDEATHSIG = SIGKILL, so that a crashed
// test binary leaves no etcd behind. Members use
// --heartbeat-interval 20 --election-timeout 200 (fast elections that stay
// stable on a loaded 2-core machine). Not thread-safe; one owner.
//
// etcd_cluster_options::member_uids (root only): member i runs under that uid
// and gid (no supplementary groups), so that iptables' owner match can tell
// its traffic apart (tests/faults/etcd_partition_helper.cpp); its data
// directory is made for it, and the temporary directory opened to it.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <keel/etcd/codec.hpp>
#include <keel/etcd/transport.hpp>

#include "temp_dir.hpp"

namespace keel::test {

struct etcd_cluster_options {
  std::vector<uid_t> member_uids;  // empty: every member runs as the caller
  std::vector<std::string> extra_args;  // appended to every member's command line
};

class etcd_cluster {
 public:
  static std::string binary() {
    const char* e = std::getenv("KEEL_TEST_ETCD");
    return e && *e ? e : "/usr/bin/etcd";
  }
  static bool available() { return ::access(binary().c_str(), X_OK) == 0; }

  // Starts `members` members and waits until each serves a linearizable read.
  // Throws std::runtime_error (with the tail of a member's log) when it
  // cannot.
  explicit etcd_cluster(int members = 1, etcd_cluster_options options = {}) : dir_(make_dir()), options_(std::move(options)) {
    if (!options_.member_uids.empty()) {
      if (options_.member_uids.size() != static_cast<std::size_t>(members))
        throw std::invalid_argument("etcd_cluster: member_uids needs one uid per member");
      ::chmod(dir_.path().c_str(), 0711);  // members reach their data directories
    }
    static int cluster_number = 0;
    token_ = "keel-test-" + std::to_string(::getpid()) + "-" + std::to_string(++cluster_number);
    for (int attempt = 0;; ++attempt) {
      members_.clear();
      for (int i = 0; i < members; ++i) {
        member m;
        m.name = "m" + std::to_string(i);
        m.data = dir_.path() / m.name;
        members_.push_back(std::move(m));
      }
      pick_ports();
      for (int i = 0; i < members; ++i) spawn(i, /*fresh=*/true);
      std::string why;
      if (wait_ready(std::chrono::seconds(30), &why)) return;
      stop_all();
      for (auto& m : members_) {
        std::error_code ec;
        std::filesystem::remove_all(m.data, ec);
      }
      if (attempt == 2) throw std::runtime_error("etcd_cluster: could not start: " + why);
    }
  }
  etcd_cluster(const etcd_cluster&) = delete;
  etcd_cluster& operator=(const etcd_cluster&) = delete;
  ~etcd_cluster() { stop_all(); }

  int size() const { return static_cast<int>(members_.size()); }
  std::string endpoint(int i) const { return "http://127.0.0.1:" + std::to_string(members_[i].client_port); }
  std::vector<std::string> endpoints() const {
    std::vector<std::string> out;
    for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
    return out;
  }
  bool running(int i) const { return members_[i].pid > 0; }
  pid_t pid(int i) const { return members_[i].pid; }
  int client_port(int i) const { return members_[i].client_port; }
  int peer_port(int i) const { return members_[i].peer_port; }

  // SIGKILL, reaped at once.
  void kill(int i) { signal_and_reap(i, SIGKILL); }
  // SIGTERM, reaped (etcd stops cleanly).
  void stop(int i) { signal_and_reap(i, SIGTERM); }
  // Restarts a stopped member on its data directory and ports.
  void start(int i) { spawn(i, /*fresh=*/false); }

  // Waits until member i serves a linearizable read (false on timeout).
  bool wait_serving(int i, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!alive(i)) return false;
      if (probe(i)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval, not a wait for an event
    }
    return false;
  }

  // The index of the member that is leader now, per the members' own status
  // (-1 when no running member reports one).
  int leader() const {
    for (int i = 0; i < size(); ++i) {
      if (!running(i)) continue;
      auto st = call(i, "maintenance/status", "{}");
      if (!st) continue;
      const auto leader_id = detail::json_int<std::uint64_t>(*st, "leader");
      for (int j = 0; j < size(); ++j) {
        if (!running(j)) continue;
        auto sj = call(j, "maintenance/status", "{}");
        if (sj && sj->contains("header") &&
            detail::json_int<std::uint64_t>((*sj)["header"], "member_id") == leader_id && leader_id != 0)
          return j;
      }
    }
    return -1;
  }

  // The last lines of member i's log (for failure messages).
  std::string log_tail(int i, std::size_t bytes = 2000) const {
    std::ifstream in(members_[i].data.string() + ".log");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > bytes ? s.substr(s.size() - bytes) : s;
  }

 private:
  struct member {
    std::string name;
    std::filesystem::path data;
    int client_port = 0, peer_port = 0;
    pid_t pid = -1;
  };

  static temp_dir make_dir() {
    // tmpfs for etcd's fsyncs, unless the caller chose a TMPDIR.
    if (!std::getenv("TMPDIR") && std::filesystem::is_directory("/dev/shm") && ::access("/dev/shm", W_OK) == 0)
      return temp_dir("/dev/shm");
    return temp_dir();
  }

  static int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("etcd_cluster: socket() failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(fd);
      throw std::runtime_error("etcd_cluster: cannot bind a port on 127.0.0.1");
    }
    ::close(fd);
    return ntohs(a.sin_port);
  }

  void pick_ports() {
    std::vector<int> taken;
    auto fresh = [&] {
      for (;;) {
        int p = free_port();
        if (std::find(taken.begin(), taken.end(), p) == taken.end()) {
          taken.push_back(p);
          return p;
        }
      }
    };
    for (auto& m : members_) {
      m.client_port = fresh();
      m.peer_port = fresh();
    }
  }

  void spawn(int i, bool fresh) {
    member& m = members_[i];
    const std::string client = "http://127.0.0.1:" + std::to_string(m.client_port);
    const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
    std::string initial;
    for (const auto& o : members_) {
      if (!initial.empty()) initial += ',';
      initial += o.name + "=http://127.0.0.1:" + std::to_string(o.peer_port);
    }
    std::vector<std::string> args = {binary(),
                                     "--name=" + m.name,
                                     "--data-dir=" + m.data.string(),
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=" + initial,
                                     "--initial-cluster-token=" + token_,
                                     std::string("--initial-cluster-state=") + (fresh ? "new" : "existing"),
                                     "--heartbeat-interval=20",
                                     "--election-timeout=200",
                                     "--enable-grpc-gateway=true",
                                     "--logger=zap",
                                     "--log-outputs=stderr",
                                     "--log-level=warn"};
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const bool own_uid = !options_.member_uids.empty();
    const uid_t uid = own_uid ? options_.member_uids[static_cast<std::size_t>(i)] : 0;
    if (own_uid && fresh) {
      // etcd wants its data directory 0700 and its own.
      std::error_code ec;
      std::filesystem::remove_all(m.data, ec);
      if (::mkdir(m.data.c_str(), 0700) != 0 || ::chown(m.data.c_str(), uid, uid) != 0)
        throw std::runtime_error("etcd_cluster: cannot make " + m.data.string() + " for uid " + std::to_string(uid));
    }
    const std::string log = m.data.string() + ".log";
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) throw std::runtime_error("etcd_cluster: cannot create " + log);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      throw std::runtime_error("etcd_cluster: fork failed");
    }
    if (pid == 0) {
      // Child: only async-signal-safe calls until exec. The uid change comes
      // first: it clears the parent-death signal.
      if (own_uid && (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
                      ::setresuid(uid, uid, uid) != 0))
        ::_exit(126);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    m.pid = pid;
  }

  // Whether member i is still running (reaps it when it exited).
  bool alive(int i) {
    member& m = members_[i];
    if (m.pid <= 0) return false;
    int status = 0;
    if (::waitpid(m.pid, &status, WNOHANG) == m.pid) {
      m.pid = -1;
      return false;
    }
    return true;
  }

  result<nlohmann::json> call(int i, std::string_view path, const std::string& body,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(500)) const {
    detail::etcd_transport_config c;
    c.endpoints = {endpoint(i)};
    c.connect_timeout = timeout;
    c.request_timeout = timeout;
    c.operation_timeout = timeout;
    detail::etcd_transport t(c);
    return t.call(path, body, detail::call_kind::read, "probe");
  }
  bool probe(int i) const {
    return call(i, "kv/range", detail::json_object().bytes("key", "keel-test-probe").str()).has_value();
  }

  bool wait_ready(std::chrono::seconds timeout, std::string* why) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int i = 0; i < size(); ++i) {
      for (;;) {
        if (!alive(i)) {
          *why = "member " + members_[i].name + " exited: " + log_tail(i);
          return false;
        }
        if (probe(i)) break;
        if (std::chrono::steady_clock::now() > deadline) {
          *why = "member " + members_[i].name + " did not serve within " + std::to_string(timeout.count()) +
                 " s: " + log_tail(i);
          return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval
      }
    }
    return true;
  }

  void signal_and_reap(int i, int sig) {
    member& m = members_[i];
    if (m.pid <= 0) return;
    ::kill(m.pid, sig);
    int status = 0;
    ::waitpid(m.pid, &status, 0);
    m.pid = -1;
  }
  void stop_all() {
    for (auto& m : members_)
      if (m.pid > 0) ::kill(m.pid, SIGTERM);
    for (auto& m : members_) {
      if (m.pid <= 0) continue;
      // SIGTERM normally ends etcd in well under a second; escalate after 5 s.
      bool done = false;
      for (int k = 0; k < 500 && !done; ++k) {
        int status = 0;
        if (::waitpid(m.pid, &status, WNOHANG) == m.pid) done = true;
        else std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the exit
      }
      if (!done) {
        ::kill(m.pid, SIGKILL);
        int status = 0;
        ::waitpid(m.pid, &status, 0);
      }
      m.pid = -1;
    }
  }

  temp_dir dir_;  // destroyed last: after the processes are stopped
  etcd_cluster_options options_;
  std::string token_;
  std::vector<member> members_;
};

}  // namespace keel::test

// tests/faults/etcd_partition_helper.cpp - etcd under network partitions, run
// by tests/faults/partition_test.cpp as `unshare -n etcd_partition_helper
// ROUNDS` (a private network namespace: its loopback, its iptables rules;
// both vanish with the process, also when it dies).
//
// It brings lo up, starts a 3-member cluster with each member under its own
// uid, and runs:
//   A (ROUNDS times): 4 clients (one store per member, one store with all
//     three endpoints) put and get a few keys without pause, each operation
//     recorded with its invoke and answer times; meanwhile the leader is cut
//     off (iptables: its outgoing traffic dropped, except to its own client
//     port; its peer port closed), healed (flush), then SIGKILLed and
//     restarted. Afterwards every member must serve the same final values
//     (convergence), and each key's history must be linearizable
//     (tests/support/linearizability.hpp).
//   B: a store given all three endpoints, first one a follower, writes once;
//     the follower is cut off (then, a second time, frozen with SIGSTOP: it
//     accepts connections and never answers); of 10 more writes at most one
//     may be lost and at most one may wait a timeout (issue 24, defect 7).
//
// Output, one per line: "stat NAME VALUE" (numbers for the test to report),
// "fail TEXT" (a check that did not hold). Exit 0 when no check failed, 1
// when one did, 2 when it could not run (the reason on stderr).
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <keel/etcd.hpp>

#include "support/etcd_cluster.hpp"
#include "support/linearizability.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using keel::errc;
using keel::test::op_kind;
using keel::test::op_outcome;
using keel::test::register_op;

namespace {

constexpr auto request_timeout = 500ms;
constexpr auto operation_timeout = 1500ms;
constexpr auto connect_timeout = 300ms;
constexpr int keys = 4;

int failures = 0;
void fail(const std::string& text) {
  ++failures;
  std::cout << "fail " << text << std::endl;
}
void stat(const std::string& name, long long value) { std::cout << "stat " << name << " " << value << std::endl; }

bool sh(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  if (st != 0) std::cerr << "command failed (" << st << "): " << cmd << std::endl;
  return st == 0;
}

const std::vector<uid_t> member_uids = {41001, 41002, 41003};

// Cuts member i off: its outgoing traffic is dropped (replies to clients and
// to peers included) except to its own client port, where its HTTP gateway
// talks to its own gRPC server; nothing reaches its peer port.
bool cut_off(const keel::test::etcd_cluster& c, int i) {
  const std::string uid = std::to_string(member_uids[static_cast<std::size_t>(i)]);
  return sh("iptables -A OUTPUT -o lo -p tcp -m owner --uid-owner " + uid + " --dport " +
            std::to_string(c.client_port(i)) + " -j ACCEPT") &&
         sh("iptables -A OUTPUT -o lo -m owner --uid-owner " + uid + " -j DROP") &&
         sh("iptables -A INPUT -i lo -p tcp --dport " + std::to_string(c.peer_port(i)) + " -j DROP");
}
bool heal() { return sh("iptables -F OUTPUT") && sh("iptables -F INPUT"); }

keel::etcd_options options_for(std::vector<std::string> endpoints, bool serializable = false) {
  keel::etcd_options o;
  o.endpoints = std::move(endpoints);
  o.prefix = "partition/";
  o.request_timeout = request_timeout;
  o.operation_timeout = operation_timeout;
  o.connect_timeout = connect_timeout;
  o.serializable_reads = serializable;
  return o;
}

// The leader once the members agree on one (a healed member's higher term
// may start an election), or -1 after `timeout`.
int wait_leader(const keel::test::etcd_cluster& c, std::chrono::milliseconds timeout = 10s) {
  const auto give_up = clock_type::now() + timeout;
  for (;;) {
    const int l = c.leader();
    if (l >= 0 || clock_type::now() > give_up) return l;
    std::this_thread::sleep_for(50ms);  // polling the election, with a deadline
  }
}

struct recorded_op {
  register_op op;
  int key = 0;
  int phase = 0;
  errc error{};
  bool errored = false;
};

// Phases of a round: what the clients' operations are counted under.
enum phase : int { warm = 0, leader_cut = 1, healed = 2, leader_killed = 3, restarted = 4, phases = 5 };
const char* phase_name[phases] = {"warm", "leader_cut", "healed", "leader_killed", "restarted"};

// One client: a store and a thread that puts and gets until told to stop.
struct client {
  std::string name;
  std::unique_ptr<keel::etcd_store> store;
  std::vector<recorded_op> ops;
  std::thread thread;
};

int run_round(keel::test::etcd_cluster& cluster, int round, std::map<int, keel::test::register_history>& histories,
              long long& total_ops) {
  std::vector<client> clients(4);
  for (int i = 0; i < 4; ++i) {
    clients[i].name = i < 3 ? "m" + std::to_string(i) : "all";
    auto s = keel::etcd_store::open(options_for(i < 3 ? std::vector<std::string>{cluster.endpoint(i)}
                                                       : cluster.endpoints()));
    if (!s) {
      fail("round " + std::to_string(round) + ": cannot open a store: " + s.error().message());
      return 1;
    }
    clients[i].store = std::make_unique<keel::etcd_store>(std::move(*s));
  }
  std::atomic<int> current_phase{warm};
  std::atomic<bool> stop{false};
  for (int c = 0; c < 4; ++c) {
    clients[c].thread = std::thread([&, c] {
      client& me = clients[c];
      std::mt19937 rng(static_cast<unsigned>(round * 100 + c));
      for (long seq = 0; !stop.load(); ++seq) {
        recorded_op r;
        r.key = static_cast<int>(rng() % keys);
        r.phase = current_phase.load();
        r.op.client = me.name;
        const std::string key = "r" + std::to_string(round) + "/k" + std::to_string(r.key);
        if (rng() % 2) {
          r.op.kind = op_kind::write;
          r.op.value = me.name + "-" + std::to_string(seq);
          r.op.invoked = clock_type::now();
          auto w = me.store->put(key, r.op.value);
          r.op.answered = clock_type::now();
          if (w) {
            r.op.outcome = op_outcome::ok;
          } else {
            r.errored = true;
            r.error = w.error().code();
            r.op.outcome = w.error() == errc::outcome_unknown ? op_outcome::unknown : op_outcome::failed;
          }
        } else {
          r.op.kind = op_kind::read;
          r.op.invoked = clock_type::now();
          auto g = me.store->get(key);
          r.op.answered = clock_type::now();
          if (g) {
            r.op.outcome = op_outcome::ok;
            r.op.found = g->has_value();
            if (*g) r.op.value = **g;
          } else {
            r.errored = true;
            r.error = g.error().code();
            r.op.outcome = op_outcome::failed;
          }
        }
        me.ops.push_back(std::move(r));
      }
    });
  }
  auto run_for = [&](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };  // the clients work meanwhile
  int errors = 0;
  run_for(800ms);
  const int leader = wait_leader(cluster);
  if (leader < 0) {
    fail("round " + std::to_string(round) + ": no leader before the partition");
    ++errors;
  }
  if (leader >= 0) {
    current_phase = leader_cut;
    if (!cut_off(cluster, leader)) {
      stop = true;
      for (auto& c : clients) c.thread.join();
      std::cerr << "iptables failed" << std::endl;
      return 2;
    }
    run_for(2500ms);
    if (!heal()) return 2;
    current_phase = healed;
    run_for(1500ms);
    const int second = wait_leader(cluster);
    if (second >= 0) {
      current_phase = leader_killed;
      cluster.kill(second);
      run_for(1500ms);
      cluster.start(second);
      if (!cluster.wait_serving(second, 15s)) {
        fail("round " + std::to_string(round) + ": the killed leader did not serve again: " + cluster.log_tail(second));
        ++errors;
      }
      current_phase = restarted;
      run_for(800ms);
    } else {
      fail("round " + std::to_string(round) + ": no leader after the heal");
      ++errors;
    }
  }
  stop = true;
  for (auto& c : clients) c.thread.join();

  // Numbers per phase, and the bound: no operation outlives operation_timeout (plus a margin).
  const auto bound = operation_timeout + 1000ms;
  for (int c = 0; c < 4; ++c) {
    long long ok[phases] = {}, unknown[phases] = {}, failed[phases] = {};
    for (const auto& r : clients[c].ops) {
      ++total_ops;
      if (r.op.outcome == op_outcome::ok) ++ok[r.phase];
      else if (r.op.outcome == op_outcome::unknown) ++unknown[r.phase];
      else ++failed[r.phase];
      if (r.op.answered - r.op.invoked > bound) {
        fail("round " + std::to_string(round) + ": " + clients[c].name + " " +
             (r.op.kind == op_kind::write ? "put" : "get") + " took " +
             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(r.op.answered - r.op.invoked).count()) +
             " ms in phase " + phase_name[r.phase]);
        ++errors;
      }
      if (r.errored && r.error != errc::unavailable && r.error != errc::outcome_unknown) {
        fail("round " + std::to_string(round) + ": " + clients[c].name + " got error " +
             std::to_string(static_cast<int>(r.error)) + " (neither unavailable nor outcome_unknown)");
        ++errors;
      }
      histories[round * 100 + r.key].push_back(r.op);
    }
    for (int p = 0; p < phases; ++p) {
      const std::string who = "round" + std::to_string(round) + "." + clients[c].name +
                              (c == leader ? "(cut)" : "") + "." + phase_name[p];
      stat(who + ".ok", ok[p]);
      stat(who + ".unknown", unknown[p]);
      stat(who + ".failed", failed[p]);
    }
  }
  // The store with every endpoint kept working while the leader was cut off.
  {
    long long acked_during_cut = 0;
    for (const auto& r : clients[3].ops) acked_during_cut += r.phase == leader_cut && r.op.outcome == op_outcome::ok;
    if (acked_during_cut == 0) {
      fail("round " + std::to_string(round) + ": the store with all endpoints did nothing while the leader was cut off");
      ++errors;
    }
  }

  // Convergence: a linearizable read of each key (part of its history), then
  // every member, read serializably (its own copy), holds that value.
  std::map<int, std::optional<std::string>> final_values;
  for (int k = 0; k < keys; ++k) {
    const std::string key = "r" + std::to_string(round) + "/k" + std::to_string(k);
    register_op op;
    op.client = "final";
    op.invoked = clock_type::now();
    auto g = clients[3].store->get(key);
    op.answered = clock_type::now();
    if (!g) {
      fail("round " + std::to_string(round) + ": the final read of " + key + " failed: " + g.error().message());
      ++errors;
      continue;
    }
    op.found = g->has_value();
    if (*g) op.value = **g;
    histories[round * 100 + k].push_back(op);
    final_values[k] = *g;
  }
  for (int m = 0; m < 3; ++m) {
    auto s = keel::etcd_store::open(options_for({cluster.endpoint(m)}, /*serializable=*/true));
    bool same = false;
    const auto give_up = clock_type::now() + 10s;
    while (s && !same && clock_type::now() < give_up) {
      same = true;
      for (const auto& [k, v] : final_values) {
        auto g = s->get("r" + std::to_string(round) + "/k" + std::to_string(k));
        if (!g || *g != v) same = false;
      }
      if (!same) std::this_thread::sleep_for(50ms);  // polling the member's apply, with a deadline
    }
    if (!same) {
      fail("round " + std::to_string(round) + ": member m" + std::to_string(m) + " did not converge");
      ++errors;
    }
  }
  return 0;
}

// Defect 7: a store with all endpoints, its preferred member (a follower)
// taken away after one write on a kept-alive connection:
//   cut     cut off by iptables (as in the rounds);
//   frozen  SIGSTOPped: the kernel still accepts connections and takes the
//           requests, nothing answers; what clients see of a member that is
//           cut off from the leader's followers but still hears the leader.
// At most one write may be lost (outcome_unknown), and at most one request
// timeout: a write that waits longer than connect_timeout counts as stalled.
void run_failover(keel::test::etcd_cluster& cluster, const std::string& mode) {
  // The follower must be the store's preferred endpoint when it goes: the
  // first write must have been served by it. The store cannot say which
  // member served a write, so a run in which no write met the follower (it
  // was still catching up and the first write moved on) is run again.
  for (int attempt = 1; attempt <= 3; ++attempt) {
    const int leader = wait_leader(cluster);
    if (leader < 0) return fail("failover " + mode + ": no leader");
    const int follower = leader == 0 ? 1 : 0;
    if (!cluster.wait_serving(follower, 10s)) return fail("failover " + mode + ": the follower does not serve");
    std::vector<std::string> endpoints{cluster.endpoint(follower)};
    for (int i = 0; i < 3; ++i)
      if (i != follower) endpoints.push_back(cluster.endpoint(i));
    // Timeouts long enough that a write slowed by load alone never looks stalled.
    auto o = options_for(endpoints);
    o.connect_timeout = o.request_timeout = 1000ms;
    o.operation_timeout = 5000ms;
    const auto stall = 900ms;
    auto s = keel::etcd_store::open(o);
    if (!s) return fail("failover " + mode + ": cannot open: " + s.error().message());
    const std::string tag = "d7/" + mode + std::to_string(attempt) + "/";
    if (auto w = s->put(tag + "first", "x"); !w)
      return fail("failover " + mode + ": first write: " + w.error().message());
    struct resume {  // SIGCONT also when a check below returns early
      pid_t pid = -1;
      ~resume() {
        if (pid > 0) ::kill(pid, SIGCONT);
      }
    } resume_member;
    if (mode == "cut") {
      if (!cut_off(cluster, follower)) return fail("failover: iptables failed");
    } else {
      resume_member.pid = cluster.pid(follower);
      ::kill(resume_member.pid, SIGSTOP);
    }
    constexpr int writes = 10;
    int acked = 0, unknown = 0, other = 0, stalled = 0;
    std::vector<std::string> acked_keys;
    const auto started = clock_type::now();
    for (int i = 0; i < writes; ++i) {
      const std::string key = tag + "k" + std::to_string(i);
      const auto t0 = clock_type::now();
      auto w = s->put(key, "v");
      if (clock_type::now() - t0 >= stall) ++stalled;
      if (w) {
        ++acked;
        acked_keys.push_back(key);
      } else if (w.error() == errc::outcome_unknown) {
        ++unknown;
      } else {
        ++other;
      }
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started);
    if (mode == "cut") heal();
    if (resume_member.pid > 0) {
      ::kill(resume_member.pid, SIGCONT);
      resume_member.pid = -1;
    }
    if (acked == writes && stalled == 0 && attempt < 3) continue;  // the follower was not preferred: again
    const std::string p = "failover." + mode + ".";
    stat(p + "attempts", attempt);
    stat(p + "writes", writes);
    stat(p + "acked", acked);
    stat(p + "outcome_unknown", unknown);
    stat(p + "other_errors", other);
    stat(p + "stalled", stalled);
    stat(p + "ms", took.count());
    if (acked == writes && stalled == 0)
      fail("failover " + mode + ": in 3 attempts no write met the cut-off follower (it was never the preferred endpoint)");
    if (acked < writes - 1)
      fail("failover " + mode + ": " + std::to_string(acked) + " of " + std::to_string(writes) +
           " writes acknowledged with the preferred member gone (at most one may be lost)");
    if (stalled > 1)
      fail("failover " + mode + ": " + std::to_string(stalled) + " of " + std::to_string(writes) + " writes waited " +
           std::to_string(stall.count()) + " ms or more with the preferred member gone (at most one may)");
    for (const auto& k : acked_keys) {
      auto g = s->get(k);
      if (!g || !g->has_value()) fail("failover " + mode + ": acknowledged write " + k + " not found afterwards");
    }
    return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the namespace, its rules and members die with the test
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 1;
  if (!sh("ip link set lo up")) return 2;
  try {
    keel::test::etcd_cluster cluster(3, {.member_uids = member_uids, .extra_args = {}});
    std::map<int, keel::test::register_history> histories;
    long long total_ops = 0;
    int partitions = 0, kills = 0;
    for (int round = 0; round < rounds; ++round) {
      const int r = run_round(cluster, round, histories, total_ops);
      if (r == 2) return 2;
      ++partitions;
      ++kills;
    }
    run_failover(cluster, "cut");
    ++partitions;
    run_failover(cluster, "frozen");
    long long checked = 0, linearizable = 0, history_ops = 0;
    for (const auto& [key, h] : histories) {
      auto result = keel::test::check_register(h);
      ++checked;
      history_ops += static_cast<long long>(result.operations);
      if (result.linearizable)
        ++linearizable;
      else
        fail("history of key " + std::to_string(key) + " is not linearizable: " + result.why);
    }
    stat("partitions", partitions);
    stat("leader_kills", kills);
    stat("operations", total_ops);
    stat("histories_checked", checked);
    stat("histories_linearizable", linearizable);
    stat("history_operations", history_ops);
  } catch (const std::exception& e) {
    std::cerr << "etcd_partition_helper: " << e.what() << std::endl;
    return 2;
  }
  return failures == 0 ? 0 : 1;
}

// tests/faults/partition_test.cpp - etcd under network partitions (issue 24):
// the register linearizability checker on known histories, then the cluster
// run in a private network namespace (etcd_partition_helper, exec'd under
// `unshare -n`): leader cut off and healed, leader SIGKILLed and restarted,
// while clients write and read through every member; every key's history
// linearizable; a store with all endpoints keeps writing when its preferred
// member is cut off or stops answering (defect 7).
#include <doctest/doctest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "faults/support.hpp"
#include "support/child_process.hpp"
#include "support/linearizability.hpp"
#include "support/scale.hpp"
#if KEEL_HAS_ETCD
#include "support/etcd_cluster.hpp"
#endif

using namespace keel::test;
using namespace keel::test::faults;

namespace {

using clock_type = std::chrono::steady_clock;

// An operation from `from` to `to` ms after a fixed origin.
register_op op(op_kind kind, const std::string& value, int from, int to, op_outcome outcome = op_outcome::ok,
               bool found = true) {
  static const auto origin = clock_type::now();
  register_op o;
  o.kind = kind;
  o.value = value;
  o.invoked = origin + std::chrono::milliseconds(from);
  o.answered = origin + std::chrono::milliseconds(to);
  o.outcome = outcome;
  o.found = found;
  o.client = "c";
  return o;
}
register_op write(const std::string& v, int from, int to, op_outcome outcome = op_outcome::ok) {
  return op(op_kind::write, v, from, to, outcome);
}
register_op read(const std::string& v, int from, int to) { return op(op_kind::read, v, from, to); }
register_op read_absent(int from, int to) { return op(op_kind::read, "", from, to, op_outcome::ok, false); }

}  // namespace

TEST_CASE("linearizability checker: register histories") {
  SUBCASE("sequential and overlapping histories that linearize") {
    CHECK(check_register({read_absent(0, 1), write("a", 2, 3), read("a", 4, 5), write("b", 6, 7), read("b", 8, 9)})
              .linearizable);
    // Overlapping writes: a read after both may see either, but then the other never.
    CHECK(check_register({write("a", 0, 10), write("b", 1, 11), read("a", 12, 13), read("a", 14, 15)}).linearizable);
    CHECK(check_register({write("a", 0, 10), write("b", 1, 11), read("b", 12, 13)}).linearizable);
    // A read overlapping a write sees the old or the new value.
    CHECK(check_register({write("a", 0, 1), write("b", 2, 10), read("a", 3, 4), read("b", 5, 6)}).linearizable);
    // An unknown write may have happened (late) or never.
    CHECK(check_register({write("a", 0, 1), write("x", 2, 3, op_outcome::unknown), read("a", 4, 5)}).linearizable);
    CHECK(check_register({write("a", 0, 1), write("x", 2, 3, op_outcome::unknown), read("a", 4, 5), read("x", 6, 7)})
              .linearizable);
    // A failed (not applied) write is ignored.
    CHECK(check_register({write("a", 0, 1), write("x", 2, 3, op_outcome::failed), read("a", 4, 5)}).linearizable);
  }
  SUBCASE("histories that do not") {
    // An acknowledged write lost.
    auto lost = check_register({write("a", 0, 1), read_absent(2, 3)});
    CHECK_FALSE(lost.linearizable);
    CHECK(lost.why.find("read <absent>") != std::string::npos);
    // A stale read after a later acknowledged write.
    CHECK_FALSE(check_register({write("a", 0, 1), write("b", 2, 3), read("a", 4, 5)}).linearizable);
    // Overlapping writes seen in both orders by later reads.
    CHECK_FALSE(
        check_register({write("a", 0, 10), write("b", 1, 11), read("a", 12, 13), read("b", 14, 15), read("a", 16, 17)})
            .linearizable);
    // A value nobody wrote, or a failed ("not applied") write that was applied.
    CHECK_FALSE(check_register({write("a", 0, 1), read("z", 2, 3)}).linearizable);
    CHECK_FALSE(check_register({write("x", 0, 1, op_outcome::failed), read("x", 2, 3)}).linearizable);
    // An unknown write that happened cannot un-happen.
    CHECK_FALSE(check_register({write("a", 0, 1), write("x", 2, 3, op_outcome::unknown), read("x", 4, 5),
                                read("a", 6, 7)})
                    .linearizable);
  }
}

TEST_CASE("etcd under partitions: leader cut off and killed, histories linearizable, failover after outcome_unknown") {
#if !KEEL_HAS_ETCD
  return skip("etcd partitions: keel built without the etcd backend");
#else
  if (auto why = net_namespaces_unavailable()) return skip("etcd partitions: " + *why);
  if (!etcd_cluster::available()) return skip("etcd partitions: no etcd program (" + etcd_cluster::binary() + ")");
  const long rounds = scaled("KEEL_PARTITION_ROUNDS", 2);
  const auto helper = helper_path("faults/etcd_partition_helper");
  // exec: the helper replaces the shell and unshare, so it is our child and
  // dies with us (PR_SET_PDEATHSIG); its namespace, rules and members with it.
  const command_result r = run_command("exec unshare -n " + shell_quote(helper.string()) + " " + std::to_string(rounds));
  std::istringstream lines(r.output);
  std::string line;
  std::vector<std::string> failures;
  std::string summary;
  long histories = 0, linearizable = 0, partitions = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("fail ", 0) == 0) failures.push_back(line.substr(5));
    if (line.rfind("stat ", 0) != 0 || line.find("round") != std::string::npos) continue;
    std::istringstream words(line.substr(5));
    std::string name;
    long value = 0;
    words >> name >> value;
    summary += " " + name + "=" + std::to_string(value);
    if (name == "histories_checked") histories = value;
    if (name == "histories_linearizable") linearizable = value;
    if (name == "partitions") partitions = value;
  }
  KEEL_REPORT("etcd partitions:" << summary);
  INFO("helper output:\n" << r.output);
  REQUIRE_MESSAGE(r.status != 2, "the partition helper could not run");
  for (const auto& f : failures) FAIL_CHECK(f);
  CHECK(r.status == 0);
  CHECK(partitions == rounds + 1);  // the leader in each round, a follower for failover
  CHECK(histories > 0);
  CHECK(linearizable == histories);
#endif
}

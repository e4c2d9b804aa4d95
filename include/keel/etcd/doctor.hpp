// keel: diagnose_cluster(endpoints) explains an etcd cluster in plain words
// (the cluster counterpart of diagnose(path), <keel/doctor.hpp>; what
// `keel doctor etcd://HOST:PORT[,...]` prints): which of the given members
// answer, the members the cluster lists, its leader, raft term and index,
// database size against the quota, alarms, and whether a write would succeed
// now. Part of <keel/etcd.hpp> (needs libcurl and nlohmann-json).
//
// The write check is a txn whose compare can never hold (the probe key's
// create_revision < 0) with a put in its success branch. etcd treats a txn
// that holds a put as a write whichever branch runs: it goes through the
// leader and a raft round (needs a quorum), the quota check and the NOSPACE
// alarm, like any keel write. Since the compare fails and the failure branch
// is empty, nothing is written: no key, no new revision, no history to
// compact, and nothing left behind if the process dies half way (a put then
// a delete of a probe key would leave the key, or at least two revisions).
// The one side effect is etcd's: when even this tiny write would exceed the
// quota, etcd raises the NOSPACE alarm, as it would for any write then.
//
// Reads nothing under any store's prefix. Timeouts: each member's status
// 1.5 s, the other requests 3 s each (a member that refuses connections is
// tried again until then). Thread safety: diagnose_cluster may run in many
// threads at once (each call has its own connections). Errors: none are
// returned; what fails is a finding (and write_error / advice).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "codec.hpp"
#include "options.hpp"
#include "transport.hpp"

namespace keel {

// One endpoint given to diagnose_cluster, asked on its own.
struct etcd_endpoint_status {
  std::string endpoint;  // http://HOST:PORT
  bool answered = false;
  bool no_leader = false;  // it answered "no leader" (to every request: keel asks for a leader)
  std::string error;       // why not, when !answered
  std::uint64_t member_id = 0, leader = 0;
  std::int64_t raft_term = 0, raft_index = 0, db_size = 0, db_size_in_use = 0;
  std::optional<std::int64_t> quota;  // dbSizeQuota, when this etcd reports it (3.4 does not)
  std::string version;
  bool learner = false;
};

// A member of the cluster's member list.
struct etcd_member {
  std::uint64_t id = 0;
  std::string name;
  std::vector<std::string> client_urls;
  bool learner = false;
};

struct etcd_doctor_report {
  std::vector<etcd_endpoint_status> endpoints;  // in the order given
  std::vector<etcd_member> members;             // the cluster's member list (empty when no member answered)
  std::uint64_t leader = 0;                     // 0: no member reports one
  std::int64_t raft_term = 0, raft_index = 0;
  std::vector<std::string> alarms;  // "NOSPACE on m0"
  bool write_would_succeed = false;
  std::string write_error;            // why not
  std::vector<std::string> findings;  // one sentence each, in order
  std::string advice;                 // what to do, when a write would not succeed
};

// A member ID as etcd's own tools spell it (hex, as etcdctl member list).
inline std::string etcd_member_id_hex(std::uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(id));
  return buf;
}

namespace detail {

// `operation` is stretched to connect_timeout + 500 ms when that is longer,
// so that a slow connect is not cut short by the operation's own deadline.
inline etcd_transport_config etcd_doctor_transport_config(std::vector<std::string> endpoints,
                                                          std::chrono::milliseconds operation,
                                                          std::chrono::milliseconds connect_timeout) {
  etcd_transport_config c;
  c.endpoints = std::move(endpoints);
  operation = std::max(operation, connect_timeout + std::chrono::milliseconds(500));
  c.connect_timeout = connect_timeout;
  c.request_timeout = std::min(operation, std::chrono::milliseconds(2000));
  c.operation_timeout = operation;
  return c;
}

inline std::string etcd_doctor_bytes_text(std::int64_t n) {
  char buf[64];
  if (n >= (1 << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1 << 20));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024);
  return buf;
}

}  // namespace detail

// Diagnoses the cluster whose client URLs ("http://HOST:PORT"; a trailing
// '/' is ignored) are `client_urls`. Only reads, except the write check
// described at the top of this file (which writes nothing).
// `connect_timeout`: the TCP connect timeout of every request (etcd_options'
// default, 1 s; keel --etcd-connect-timeout).
inline etcd_doctor_report diagnose_cluster(const std::vector<std::string>& client_urls,
                                           std::chrono::milliseconds connect_timeout = etcd_options{}.connect_timeout) {
  using detail::call_kind;
  using detail::etcd_doctor_bytes_text;
  using detail::etcd_doctor_transport_config;
  using detail::json_int;
  std::vector<std::string> endpoints;
  for (auto e : client_urls) {
    while (!e.empty() && e.back() == '/') e.pop_back();
    endpoints.push_back(std::move(e));
  }
  etcd_doctor_report r;
  auto say = [&](std::string s) { r.findings.push_back(std::move(s)); };

  // 1. Each given endpoint, on its own.
  std::vector<std::string> answering;
  for (const auto& e : endpoints) {
    etcd_endpoint_status s;
    s.endpoint = e;
    detail::etcd_transport t(etcd_doctor_transport_config({e}, std::chrono::milliseconds(1500), connect_timeout));
    auto st = t.call("maintenance/status", "{}", call_kind::read, "status");
    if (!st) {
      s.error = st.error().message();
      s.no_leader = s.error.find("no leader") != std::string::npos;
      if (s.no_leader)
        say(e +
            " runs, but has no leader, so it serves no request (etcd answers \"no leader\" to a client that "
            "asks for one, as keel does).");
      else
        say(e + " does not answer: " + s.error);
    } else {
      s.answered = true;
      answering.push_back(e);
      auto member = detail::parse_etcd_member_status(*st);
      s.member_id = member.member_id;
      s.leader = member.leader;
      s.raft_term = member.raft_term;
      s.raft_index = member.raft_index;
      s.db_size = member.db_size;
      s.db_size_in_use = member.db_size_in_use;
      s.quota = member.quota;
      s.version = std::move(member.version);
      s.learner = member.learner;
      if (s.leader != 0) r.leader = s.leader;
      if (s.raft_term > r.raft_term) r.raft_term = s.raft_term;
      if (s.raft_index > r.raft_index) r.raft_index = s.raft_index;
    }
    r.endpoints.push_back(std::move(s));
  }
  const std::string no_leader_advice =
      "The cluster has no leader: a majority of its members must run and reach each other on their peer "
      "URLs. Start the stopped members (see above which ones do not answer) and check their logs.";
  if (answering.empty()) {
    const bool leaderless =
        std::any_of(r.endpoints.begin(), r.endpoints.end(), [](const auto& s) { return s.no_leader; });
    if (leaderless) {
      say("No member that answered knows a leader: the cluster cannot commit writes (no quorum, or an election "
          "is under way).");
      r.write_error = "no leader";
      r.advice = no_leader_advice;
    } else {
      say("No member answered, so no request can be served.");
      r.write_error = "no member answered";
      r.advice =
          "Check that etcd runs and listens on these client URLs (etcd --listen-client-urls, "
          "--advertise-client-urls), that nothing blocks the ports, and that the gRPC gateway is on "
          "(keel talks to etcd's HTTP/JSON gateway, on by default in etcd 3.4).";
    }
    say("Verdict: a write would NOT succeed now.");
    return r;
  }
  detail::etcd_transport cluster(etcd_doctor_transport_config(answering, std::chrono::milliseconds(3000), connect_timeout));

  // 2. The members the cluster lists, and the leader.
  auto name_of = [&](std::uint64_t id) {
    for (const auto& m : r.members)
      if (m.id == id) return (m.name.empty() ? "(unnamed)" : m.name) + " (id " + etcd_member_id_hex(id) + ")";
    return "id " + etcd_member_id_hex(id);
  };
  if (auto ml = cluster.call("cluster/member/list", "{}", call_kind::read, "member list"); !ml) {
    say("The member list could not be read: " + ml.error().message());
  } else if (auto ms = ml->find("members"); ms != ml->end() && ms->is_array()) {
    std::string list;
    for (const auto& m : *ms) {
      etcd_member em;
      em.id = json_int<std::uint64_t>(m, "ID");
      em.name = m.value("name", "");
      em.learner = m.value("isLearner", false);
      if (auto u = m.find("clientURLs"); u != m.end() && u->is_array())
        for (const auto& x : *u)
          if (x.is_string()) em.client_urls.push_back(x.get<std::string>());
      r.members.push_back(std::move(em));
    }
    for (const auto& m : r.members) {
      std::string urls;
      for (const auto& u : m.client_urls) urls += (urls.empty() ? "" : " ") + u;
      list += (list.empty() ? "" : "; ") + name_of(m.id) + (m.learner ? " learner" : "") + " at " +
              (urls.empty() ? std::string("(no client URL yet)") : urls);
    }
    say("The cluster has " + std::to_string(r.members.size()) + " member" + (r.members.size() == 1 ? "" : "s") + ": " +
        list + ".");
  }
  for (const auto& s : r.endpoints)
    if (s.answered)
      say(s.endpoint + " is member " + name_of(s.member_id) + ", etcd " + s.version + (s.learner ? ", a learner" : "") +
          ": raft term " + std::to_string(s.raft_term) + ", raft index " + std::to_string(s.raft_index) + ".");
  if (r.leader != 0)
    say("Leader: " + name_of(r.leader) + ", raft term " + std::to_string(r.raft_term) + ".");
  else
    say("No member that answered knows a leader: the cluster cannot commit writes (no quorum, or an election "
        "is under way).");

  // 3. Database size against the quota (every member keeps the whole
  // database; the largest one reaches the quota first).
  const etcd_endpoint_status* biggest = nullptr;
  for (const auto& s : r.endpoints)
    if (s.answered && (!biggest || s.db_size > biggest->db_size)) biggest = &s;
  std::string size = "Database size " + etcd_doctor_bytes_text(biggest->db_size) + " (" +
                     etcd_doctor_bytes_text(biggest->db_size_in_use) +
                     " in use; the rest is freed by etcdctl defrag) on " + name_of(biggest->member_id);
  if (biggest->quota && *biggest->quota > 0) {
    size += ", of a quota of " + etcd_doctor_bytes_text(*biggest->quota) + " (" +
            std::to_string(biggest->db_size * 100 / *biggest->quota) + "%).";
  } else {
    constexpr std::int64_t default_quota = std::int64_t{2} << 30;
    size += "; etcd " + biggest->version + " does not report its quota (--quota-backend-bytes, default 2 GiB: " +
            std::to_string(biggest->db_size * 100 / default_quota) + "% of that).";
  }
  say(size);

  // 4. Alarms.
  if (auto al = cluster.call("maintenance/alarm", "{\"action\":\"GET\"}", call_kind::read, "alarm list"); !al) {
    say("The alarms could not be read: " + al.error().message());
  } else {
    if (auto as = al->find("alarms"); as != al->end() && as->is_array())
      for (const auto& a : *as) {
        std::string kind = a.value("alarm", "NONE");
        if (kind == "NONE") continue;
        r.alarms.push_back(kind + " on " + name_of(json_int<std::uint64_t>(a, "memberID")));
      }
    std::string list;
    for (const auto& a : r.alarms) list += (list.empty() ? "" : ", ") + a;
    say(r.alarms.empty() ? std::string("No alarms.") : "Alarms: " + list + ".");
  }

  // 5. Would a write succeed now? (see the top of this file)
  const std::string probe_key = std::string("\0keel-doctor/write-probe", 24);
  const std::string key64 = detail::base64_encode(probe_key);
  const std::string txn = "{\"compare\":[{\"key\":\"" + key64 +
                          "\",\"target\":\"CREATE\",\"result\":\"LESS\",\"create_revision\":\"0\"}],"
                          "\"success\":[{\"request_put\":{\"key\":\"" +
                          key64 + "\",\"value\":\"\"}}]}";
  auto w = cluster.call("kv/txn", txn, call_kind::write, "write check");
  if (w && !w->value("succeeded", false)) {
    r.write_would_succeed = true;
    say("A write check (a txn with a put behind a compare that never holds: it went through the leader and a raft "
        "round, and wrote nothing) succeeded.");
    say("Verdict: a write would succeed now.");
    return r;
  }
  if (w) {  // cannot happen: the compare cannot hold
    r.write_error = "the write check's compare held: the probe key was written";
    say("The write check wrote its probe key, which it must never do; delete it: etcdctl del --prefix "
        "$'\\x00keel-doctor/'.");
  } else {
    r.write_error = w.error().message();
    say("A write check failed (" + std::string(to_string(w.error().code())) + "): " + r.write_error);
  }
  say("Verdict: a write would NOT succeed now.");
  const errc code = w ? errc::io_error : w.error().code();
  bool nospace = code == errc::no_space;
  for (const auto& a : r.alarms)
    if (a.rfind("NOSPACE", 0) == 0) nospace = true;
  if (nospace)
    r.advice =
        "The database reached its quota (NOSPACE): compact the history (keel compact --etcd ... or etcdctl "
        "compact), defragment every member (etcdctl defrag), then disarm the alarm (etcdctl alarm disarm); "
        "or raise --quota-backend-bytes.";
  else if (r.leader == 0 || code == errc::unavailable)
    r.advice = no_leader_advice;
  else if (code == errc::outcome_unknown)
    r.advice =
        "The cluster did not commit in time: check the members' logs for slow disks (fsync) or an "
        "unstable leader, and whether a majority of members reach each other.";
  else
    r.advice = "See the failure above; the members' logs say more.";
  return r;
}

}  // namespace keel

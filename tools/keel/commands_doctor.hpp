// keel tool: the doctor command. `doctor PATH` explains a RocksDB directory,
// a hybrid store or a persisted memory store (keel::diagnose, <keel/doctor.hpp>); `doctor etcd://HOST:PORT[,...]` an
// etcd cluster (keel::diagnose_cluster, <keel/etcd.hpp>; only with the etcd backend).
#pragma once

#include <cstdio>
#include <keel/doctor.hpp>
#include <string>

#include "args.hpp"
#include "exit_codes.hpp"
#include "text.hpp"
#if KEEL_HAS_ETCD
#include <keel/etcd.hpp>

#include "doctor_etcd.hpp"
#endif

namespace keel_tool {

// doctor PATH: the RocksDB directory explained (keel::diagnose).
inline int doctor_path(const cli& c) {
  keel::doctor_report r = keel::diagnose(c.args[1]);
  int code = r.verdict == keel::doctor_verdict::opens          ? exit_ok
             : r.verdict == keel::doctor_verdict::would_create ? exit_open_failed
                                                               : exit_not_found;
  if (c.json) {
    std::string j = "{\"path\":" + json_string(r.path.string());
    j += ",\"exists\":" + std::string(r.exists ? "true" : "false");
    j += ",\"is_directory\":" + std::string(r.is_directory ? "true" : "false");
    j += ",\"is_rocksdb\":" + std::string(r.is_rocksdb ? "true" : "false");
    if (!r.hybrid_tier.empty()) j += ",\"hybrid_tier\":" + json_string(r.hybrid_tier);
    if (r.is_memory_store) j += ",\"memory_store\":true,\"memory_logs\":" + std::to_string(r.memory_logs);
    j += ",\"lock_file\":" + std::string(r.lock_file ? "true" : "false");
    j += ",\"locked\":" + std::string(r.holder ? "true" : "false");
    if (r.holder) {
      j += ",\"holder_pid\":" + std::to_string(r.holder->pid);
      j += ",\"holder_command\":" + json_string(r.holder->command);
    }
    j += ",\"filesystem\":" + json_string(r.filesystem);
    j += ",\"filesystem_may_not_lock\":" + std::string(r.filesystem_may_not_lock ? "true" : "false");
    if (r.locks_work) j += ",\"locks_work\":" + std::string(*r.locks_work ? "true" : "false");
    if (r.estimated_keys) j += ",\"estimated_keys\":" + std::to_string(*r.estimated_keys);
    const char* verdict = r.verdict == keel::doctor_verdict::opens          ? "opens"
                          : r.verdict == keel::doctor_verdict::would_create ? "would_create"
                                                                            : "will_not_open";
    j += ",\"verdict\":\"" + std::string(verdict) + "\"";
    j += ",\"findings\":[";
    for (std::size_t i = 0; i < r.findings.size(); ++i) j += (i ? "," : "") + json_string(r.findings[i]);
    j += "],\"advice\":" + json_string(r.advice) + "}\n";
    write_out(j);
  } else {
    for (const auto& f : r.findings) std::printf("%s\n", f.c_str());
    if (!r.advice.empty()) std::printf("What to do: %s\n", r.advice.c_str());
  }
  return code;
}

#if KEEL_HAS_ETCD
// doctor etcd://...: exit 0 when a write would succeed now, else 1.
inline int doctor_etcd(const cli& c, const std::vector<std::string>& endpoints) {
  const keel::etcd_doctor_report r =
      keel::diagnose_cluster(endpoints, c.etcd_connect_timeout.value_or(keel::etcd_options{}.connect_timeout));
  if (c.json) {
    auto str = [](const std::string& s) { return json_string(s); };
    auto num = [](auto v) { return std::to_string(v); };
    std::string j = "{\"endpoints\":[";
    for (std::size_t i = 0; i < r.endpoints.size(); ++i) {
      const auto& s = r.endpoints[i];
      j += std::string(i ? "," : "") + "{\"endpoint\":" + str(s.endpoint) +
           ",\"answered\":" + (s.answered ? "true" : "false");
      if (s.answered) {
        j += ",\"member_id\":" + str(keel::etcd_member_id_hex(s.member_id)) + ",\"version\":" + str(s.version) +
             ",\"raft_term\":" + num(s.raft_term) + ",\"raft_index\":" + num(s.raft_index) +
             ",\"db_size\":" + num(s.db_size) + ",\"db_size_in_use\":" + num(s.db_size_in_use);
        if (s.quota) j += ",\"db_size_quota\":" + num(*s.quota);
      } else {
        j += ",\"no_leader\":" + std::string(s.no_leader ? "true" : "false") + ",\"error\":" + str(s.error);
      }
      j += "}";
    }
    j += "],\"members\":[";
    for (std::size_t i = 0; i < r.members.size(); ++i) {
      const auto& m = r.members[i];
      j += std::string(i ? "," : "") + "{\"id\":" + str(keel::etcd_member_id_hex(m.id)) + ",\"name\":" + str(m.name) +
           ",\"learner\":" + (m.learner ? "true" : "false") + ",\"client_urls\":[";
      for (std::size_t k = 0; k < m.client_urls.size(); ++k) j += (k ? "," : "") + str(m.client_urls[k]);
      j += "]}";
    }
    j += "],\"leader\":" + (r.leader ? str(keel::etcd_member_id_hex(r.leader)) : std::string("null"));
    j += ",\"raft_term\":" + num(r.raft_term) + ",\"raft_index\":" + num(r.raft_index) + ",\"alarms\":[";
    for (std::size_t i = 0; i < r.alarms.size(); ++i) j += (i ? "," : "") + str(r.alarms[i]);
    j += "],\"write_would_succeed\":" + std::string(r.write_would_succeed ? "true" : "false");
    if (!r.write_would_succeed) j += ",\"write_error\":" + str(r.write_error);
    j += ",\"findings\":[";
    for (std::size_t i = 0; i < r.findings.size(); ++i) j += (i ? "," : "") + str(r.findings[i]);
    j += "],\"advice\":" + str(r.advice) + "}\n";
    write_out(j);
  } else {
    for (const auto& f : r.findings) std::printf("%s\n", f.c_str());
    if (!r.advice.empty()) std::printf("What to do: %s\n", r.advice.c_str());
  }
  return r.write_would_succeed ? exit_ok : exit_not_found;
}
#endif

// doctor PATH | doctor etcd://HOST:PORT[,HOST:PORT...]
inline int cmd_doctor(const cli& c) {
  if (c.args.size() != 2) return usage_error("doctor takes one PATH");
  const std::string& target = c.args[1];
  if (target.rfind("etcd://", 0) != 0) return doctor_path(c);
#if KEEL_HAS_ETCD
  std::string error;
  const auto endpoints = parse_etcd_target(target, error);
  if (endpoints.empty()) return usage_error(error);
  return doctor_etcd(c, endpoints);
#else
  return usage_error(no_etcd_backend("doctor " + target));
#endif
}

}  // namespace keel_tool

// keel tool: the doctor command. `doctor PATH` explains a RocksDB directory,
// a hybrid store or a persisted memory store (keel::diagnose, <keel/doctor.hpp>); `doctor etcd://HOST:PORT[,...]` an
// etcd cluster (keel::diagnose_cluster, <keel/etcd.hpp>; only with the etcd
// backend); `doctor postgres://...`, `doctor --postgres CONNINFO` or `doctor`
// with KEEL_POSTGRES set a PostgreSQL server and the store's table
// (keel::diagnose_postgres, <keel/postgres.hpp>; only with the PostgreSQL
// backend). This file only formats what the library diagnoses.
#pragma once

#include <cstdio>
#include <keel/doctor.hpp>
#include <string>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "open.hpp"
#include "text.hpp"
#if KEEL_HAS_ETCD
#include <keel/etcd.hpp>

#include "doctor_etcd.hpp"
#endif

namespace keel_tool {

// The end of every doctor's report, the same for a path, etcd and
// PostgreSQL: in JSON the findings and the advice (closing the object), in
// text one line per finding and "What to do: ...".
inline std::string doctor_findings_json(const std::vector<std::string>& findings, const std::string& advice) {
  std::string j = ",\"findings\":[";
  for (std::size_t i = 0; i < findings.size(); ++i) j += (i ? "," : "") + json_string(findings[i]);
  return j + "],\"advice\":" + json_string(advice) + "}\n";
}
inline void print_doctor_findings(const std::vector<std::string>& findings, const std::string& advice) {
  for (const auto& f : findings) std::printf("%s\n", f.c_str());
  if (!advice.empty()) std::printf("What to do: %s\n", advice.c_str());
}

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
    j += doctor_findings_json(r.findings, r.advice);
    write_out(j);
  } else {
    print_doctor_findings(r.findings, r.advice);
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
    j += doctor_findings_json(r.findings, r.advice);
    write_out(j);
  } else {
    print_doctor_findings(r.findings, r.advice);
  }
  return r.write_would_succeed ? exit_ok : exit_not_found;
}
#endif

#if KEEL_HAS_POSTGRES
// doctor postgres://... | doctor --postgres CONNINFO: exit 0 when a write
// would succeed now, 1 when not, 2 when the conninfo cannot be parsed.
inline int doctor_postgres(const cli& c, const std::string& conninfo) {
  auto cfg = postgres_config(c, "", conninfo);
  if (!cfg) return usage_error(cfg.error().message());
  const keel::postgres_doctor_report r = keel::diagnose_postgres(cfg->postgres);
  if (c.json) {
    auto str = [](std::string_view s) { return json_string(s); };
    auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
    std::string j = "{\"hosts\":" + str(r.hosts) + ",\"each_host\":[";
    for (std::size_t i = 0; i < r.each_host.size(); ++i) {
      const auto& h = r.each_host[i];
      j += std::string(i ? "," : "") + "{\"host\":" + str(h.host) + ",\"port\":" + str(h.port) +
           ",\"reachable\":" + flag(h.reachable);
      if (h.reachable)
        j += ",\"server_version\":" + std::to_string(h.server_version) + ",\"standby\":" + flag(h.standby);
      else
        j += ",\"error\":" + str(h.error);
      j += "}";
    }
    j += "],\"table\":" + str(r.table) + ",\"reachable\":" + flag(r.reachable);
    if (!r.reachable) {
      j += ",\"connect_error\":" + str(r.connect_error) + ",\"connect_error_code\":" +
           str(keel::to_string(r.connect_error_code));
    } else {
      j += ",\"host\":" + str(r.host) + ",\"port\":" + str(r.port) + ",\"user\":" + str(r.user) +
           ",\"database\":" + str(r.database) + ",\"server_version\":" + std::to_string(r.server_version) +
           ",\"server_version_text\":" + str(r.server_version_text) + ",\"standby\":" + flag(r.standby) +
           ",\"table_exists\":" + flag(r.table_exists) + ",\"table_shape_ok\":" + flag(r.table_shape_ok) +
           ",\"columns\":[";
      for (std::size_t i = 0; i < r.columns.size(); ++i)
        j += std::string(i ? "," : "") + "{\"name\":" + str(r.columns[i].name) + ",\"type\":" + str(r.columns[i].type) +
             ",\"not_null\":" + flag(r.columns[i].not_null) + "}";
      j += "],\"key_is_primary_key\":" + flag(r.key_is_primary_key);
      j += ",\"rows\":" + (r.rows ? std::to_string(*r.rows) : std::string("null")) +
           ",\"rows_exact\":" + flag(r.rows_exact);
      j += ",\"table_bytes\":" + (r.table_bytes ? std::to_string(*r.table_bytes) : std::string("null"));
    }
    j += ",\"write_would_succeed\":" + flag(r.write_would_succeed);
    if (!r.write_would_succeed) {
      j += ",\"write_error\":" + str(r.write_error);
      if (r.write_error_code) j += ",\"write_error_code\":" + str(keel::to_string(*r.write_error_code));
    }
    j += doctor_findings_json(r.findings, r.advice);
    write_out(j);
  } else {
    print_doctor_findings(r.findings, r.advice);
  }
  if (!r.reachable && r.connect_error_code == keel::errc::invalid_argument) return exit_usage;
  return r.write_would_succeed ? exit_ok : exit_not_found;
}
#endif

// Whether `target` is a PostgreSQL URI (libpq's postgres:// or postgresql://).
inline bool is_postgres_uri(const std::string& target) {
  return target.rfind("postgres://", 0) == 0 || target.rfind("postgresql://", 0) == 0;
}

// doctor PATH | doctor etcd://HOST:PORT[,HOST:PORT...] | doctor postgres://... |
// doctor --postgres CONNINFO | doctor (with KEEL_POSTGRES)
inline int cmd_doctor(const cli& c) {
  const std::string server = postgres_conninfo(c);  // --postgres, else $KEEL_POSTGRES
  if (c.args.size() == 1 && !server.empty()) {
#if KEEL_HAS_POSTGRES
    return doctor_postgres(c, server);
#else
    return usage_error(no_postgres_backend("doctor with KEEL_POSTGRES"));
#endif
  }
  if (c.args.size() != 2)
    return usage_error("doctor takes one PATH, etcd://HOST:PORT[,...], postgres://... or --postgres CONNINFO");
  const std::string& target = c.args[1];
  if (!c.postgres.empty())
    return usage_error("doctor: --postgres names a server and '" + target + "' another target; give one of them");
  if (is_postgres_uri(target)) {
#if KEEL_HAS_POSTGRES
    return doctor_postgres(c, target);
#else
    return usage_error(no_postgres_backend("doctor " + target));
#endif
  }
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

// keel tool: the target of `keel doctor etcd://HOST:PORT[,HOST:PORT...]`.
// The diagnosis is the library's (keel::diagnose_cluster, <keel/etcd.hpp>);
// commands_doctor.hpp prints it. Only with the etcd backend (KEEL_HAS_ETCD).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace keel_tool {

// The client URLs of `target` (etcd://HOST:PORT[,HOST:PORT...]); an error
// message in `error` when it is not that.
inline std::vector<std::string> parse_etcd_target(std::string_view target, std::string& error) {
  std::vector<std::string> out;
  constexpr std::string_view scheme = "etcd://";
  if (target.substr(0, scheme.size()) != scheme) {
    error = "doctor: expected etcd://HOST:PORT[,HOST:PORT...]";
    return out;
  }
  std::string_view rest = target.substr(scheme.size());
  while (true) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    while (!item.empty() && item.back() == '/') item.remove_suffix(1);
    if (item.empty() || item.find_first_of("/@ ") != std::string_view::npos ||
        item.find(':') == std::string_view::npos) {
      error = "doctor: '" + std::string(item) + "' is not HOST:PORT (expected etcd://HOST:PORT[,HOST:PORT...])";
      return {};
    }
    out.push_back("http://" + std::string(item));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace keel_tool

// Test support: runs the keel command-line tool (tools/keel) to completion
// and captures its exit status, stdout and stderr apart. The binary is found
// through $KEEL_TEST_CLI (set by meson), else next to the helpers as
// ../tools/keel. stderr goes to a file in a fresh temporary directory (via
// /bin/sh, with the arguments passed as "$@": no quoting issues).
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "temp_dir.hpp"

namespace keel::test {

struct cli_result {
  int status = -1;
  std::string out, err;  // stdout, stderr
  bool has(const std::string& s) const { return out.find(s) != std::string::npos; }
  bool says(const std::string& s) const { return err.find(s) != std::string::npos; }
};

inline std::filesystem::path keel_cli_path() {
  if (const char* p = std::getenv("KEEL_TEST_CLI"); p && *p) return p;
  return helper_path("../tools/keel");
}

inline cli_result run_cli(const std::vector<std::string>& args) {
  using namespace std::chrono_literals;
  temp_dir tmp;
  const std::string err_file = (tmp.path() / "stderr").string();
  std::vector<std::string> sh_args = {"-c", "f=$0; shift; exec \"$@\" 2>\"$f\"", err_file, "sh",
                                      keel_cli_path().string()};
  sh_args.insert(sh_args.end(), args.begin(), args.end());
  child_process child("/bin/sh", std::move(sh_args));
  child.close_stdin();
  cli_result r;
  while (auto line = child.read_line(60s)) r.out += *line + "\n";
  auto status = child.wait_for(60s);
  REQUIRE(status.has_value());
  r.status = *status;
  std::ifstream in(err_file, std::ios::binary);
  r.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

}  // namespace keel::test

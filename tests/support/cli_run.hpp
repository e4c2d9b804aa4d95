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

// The ms of a time `keel ttl` prints ("1h59m58s", "250ms", "0s"; a trailing
// newline allowed); -1 when `text` is not one.
inline long long ttl_text_ms(std::string text) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.empty()) return -1;
  long long total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    if (j == i || j - i > 12) return -1;
    const long long n = std::stoll(text.substr(i, j - i));
    std::size_t k = j;
    while (k < text.size() && text[k] >= 'a' && text[k] <= 'z') ++k;
    const std::string unit = text.substr(j, k - j);
    if (unit == "d") total += n * 86400000;
    else if (unit == "h") total += n * 3600000;
    else if (unit == "m") total += n * 60000;
    else if (unit == "s") total += n * 1000;
    else if (unit == "ms") total += n;
    else return -1;
    i = k;
  }
  return total;
}

}  // namespace keel::test

// docs/cli.md matches the tool (issue 25): every example block of the page
// runs, in order, and prints what the page shows. The convention, as
// docs/cli.md "The examples on this page" states it for readers:
//
//  - Every fenced block of the page is an example, with the info string
//    "sh" and optional tags: "etcd" (needs an etcd member: the test starts one
//    and sets $ENDPOINT to its HOST:PORT, $DOWN to a HOST:PORT where nothing
//    listens), "postgres" (needs a PostgreSQL server: $PG, its conninfo),
//    "lock-holder=PATH" (a RocksDB program, tests/lock_holder.cpp, holds the
//    database PATH open while the block runs). A fenced block of another kind
//    fails the test: the page has no example that does not run.
//  - A line "$ COMMAND" is run by /bin/sh; the lines after it, up to the next
//    "$ " line or the end of the block, are what it prints, stdout and stderr
//    together (as a terminal shows them; keel writes its messages at once and
//    its stdout at exit, so a command's messages come first).
//  - A command must exit 0, unless its line ends with a comment "# exit N"
//    (optionally followed by ": words"): then it must exit N.
//  - In an output line, "..." matches any text (also none); a line that is
//    just "..." matches any number of lines (also none). $ENDPOINT, $DOWN
//    and $PG stand for their values.
//  - The blocks run in page order, all in one fresh empty directory (a block
//    may use what an earlier one made), each block in a shell of its own (an
//    export or cd lasts until the end of the block), with `keel` the tool
//    under test (first on PATH), LC_ALL=C.UTF-8, and no KEEL_* variable set.
//  - Blocks tagged etcd / postgres are skipped, and counted, when the test
//    binary was built without that backend's tests or its server is missing;
//    nothing else is ever skipped.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/cli_run.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#if KEEL_HAS_ETCD
#include "support/etcd_cluster.hpp"
#include "support/refused_port.hpp"
#endif
#if KEEL_HAS_POSTGRES
#include "support/backends.hpp"
#endif

namespace fs = std::filesystem;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {

struct doc_command {
  std::size_t line = 0;  // 1-based line of the page
  std::string text;      // without the "$ "
  int status = 0;        // the exit status it must have
  std::vector<std::string> output;  // patterns
};

struct doc_block {
  std::size_t line = 0;  // of the opening fence
  std::vector<std::string> tags;  // the info string's words after "sh"
  std::vector<doc_command> commands;
  bool tagged(const std::string& t) const {
    for (const auto& x : tags)
      if (x == t) return true;
    return false;
  }
  std::string tag_value(const std::string& name) const {  // "name=VALUE" -> VALUE
    for (const auto& x : tags)
      if (x.rfind(name + "=", 0) == 0) return x.substr(name.size() + 1);
    return "";
  }
};

struct doc_page {
  std::vector<doc_block> blocks;
  std::vector<std::string> problems;  // fences that are not examples, malformed blocks
};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = text.find('\n', at);
    lines.push_back(text.substr(at, nl == std::string::npos ? std::string::npos : nl - at));
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return lines;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

doc_page parse_page(const std::string& text) {
  doc_page page;
  const auto lines = split_lines(text);
  static const std::regex exit_comment(R"((^|\s)#\s*exit ([0-9]+)(:.*)?$)");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("```", 0) != 0) continue;
    const std::size_t open = i + 1;
    const auto info = words(lines[i].substr(3));
    std::size_t close = i + 1;
    while (close < lines.size() && lines[close].rfind("```", 0) != 0) ++close;
    if (close == lines.size()) {
      page.problems.push_back("line " + std::to_string(open) + ": a fence that is never closed");
      break;
    }
    if (info.empty() || info[0] != "sh") {
      page.problems.push_back("line " + std::to_string(open) + ": a fenced block that is not an example (```" +
                              (info.empty() ? "" : info[0]) + "): make it a ```sh block the test runs");
    } else {
      doc_block b;
      b.line = open;
      b.tags.assign(info.begin() + 1, info.end());
      for (std::size_t k = i + 1; k < close; ++k) {
        if (lines[k].rfind("$ ", 0) == 0) {
          doc_command c;
          c.line = k + 1;
          c.text = lines[k].substr(2);
          std::smatch m;
          if (std::regex_search(c.text, m, exit_comment)) c.status = std::stoi(m[2].str());
          b.commands.push_back(std::move(c));
        } else if (b.commands.empty()) {
          page.problems.push_back("line " + std::to_string(k + 1) + ": output before the block's first \"$ \" command");
        } else {
          b.commands.back().output.push_back(lines[k]);
        }
      }
      if (b.commands.empty()) page.problems.push_back("line " + std::to_string(open) + ": a block with no command");
      page.blocks.push_back(std::move(b));
    }
    i = close;
  }
  return page;
}

// "..." in `pattern` matches any text.
bool line_matches(std::string_view pattern, std::string_view line) {
  const std::size_t star = pattern.find("...");
  if (star == std::string_view::npos) return pattern == line;
  if (line.substr(0, star) != pattern.substr(0, star)) return false;
  const std::string_view rest = pattern.substr(star + 3);
  for (std::size_t at = star; at <= line.size(); ++at)
    if (line_matches(rest, line.substr(at))) return true;
  return false;
}

// A pattern line "..." matches any number of lines.
bool lines_match(const std::vector<std::string>& pattern, std::size_t p, const std::vector<std::string>& got,
                 std::size_t g) {
  if (p == pattern.size()) return g == got.size();
  if (pattern[p] == "...") {
    for (std::size_t k = g; k <= got.size(); ++k)
      if (lines_match(pattern, p + 1, got, k)) return true;
    return false;
  }
  return g < got.size() && line_matches(pattern[p], got[g]) && lines_match(pattern, p + 1, got, g + 1);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

std::string sh_quote(const std::string& s) { return "'" + replace_all(s, "'", "'\\''") + "'"; }

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

const char* const step_mark = "keel-doc-test-step-end ";

struct step_result {
  int status = -1;
  std::vector<std::string> output;
};

// Runs the block's commands in one /bin/sh (stderr into stdout) in `page`;
// after each, a mark line with its exit status splits the output.
std::vector<step_result> run_block(const doc_block& b, const fs::path& page, const fs::path& bin,
                                   const std::vector<std::pair<std::string, std::string>>& vars,
                                   const fs::path& script) {
  std::string s = "exec 2>&1\ncd " + sh_quote(page.string()) + " || exit 99\n";
  s += "PATH=" + sh_quote(bin.string()) + ":\"$PATH\"; export PATH\nLC_ALL=C.UTF-8; export LC_ALL\n";
  s += "for v in $(env | sed -n 's/^\\(KEEL_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset \"$v\"; done\n";
  for (const auto& [name, value] : vars) s += name + "=" + sh_quote(value) + "; export " + name + "\n";
  for (const auto& c : b.commands) s += c.text + "\nprintf '\\n%s%s\\n' " + sh_quote(step_mark) + " \"$?\"\n";
  {
    std::ofstream out(script, std::ios::binary | std::ios::trunc);
    out << s;
    REQUIRE(out.good());
  }
  child_process child("/bin/sh", {script.string()});
  child.close_stdin();
  std::vector<step_result> steps;
  std::vector<std::string> current;
  while (auto line = child.read_line(60s)) {
    if (line->rfind(step_mark, 0) == 0) {
      // The mark's leading "\n" ends the command's last line, or adds an
      // empty one after a complete last line.
      if (!current.empty() && current.back().empty()) current.pop_back();
      steps.push_back({std::atoi(line->c_str() + std::string(step_mark).size()), std::move(current)});
      current.clear();
    } else {
      current.push_back(*line);
    }
  }
  const auto status = child.wait_for(60s);
  REQUIRE(status.has_value());
  if (!current.empty()) steps.push_back({-1, std::move(current)});  // what came after the last mark
  return steps;
}

// A RocksDB program (tests/lock_holder.cpp) holding `db` (relative to
// `page`, as the page names it) open until destroyed.
class lock_holder {
 public:
  lock_holder(const fs::path& page, const std::string& db)
      : child_("/bin/sh", {"-c", "cd \"$0\" && exec \"$1\" \"$2\"", page.string(), helper_path("lock_holder").string(),
                           db}) {
    auto line = child_.read_line(30s);
    REQUIRE(line.has_value());
    REQUIRE(line->rfind("ready ", 0) == 0);
  }
  ~lock_holder() {
    child_.close_stdin();
    (void)child_.wait_for(30s);
  }

 private:
  child_process child_;
};

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE("docs/cli.md: every example runs as shown (issue 25)") {
    // The source tree: $KEEL_TEST_SOURCE_DIR (set by meson), else from this file's path.
    const char* src = std::getenv("KEEL_TEST_SOURCE_DIR");
    const fs::path doc = (src && *src ? fs::path(src) : fs::path(__FILE__).parent_path().parent_path()) / "docs" / "cli.md";
    REQUIRE(fs::exists(doc));
    std::ifstream in(doc, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const doc_page page = parse_page(text);
    // No exceptions: every fenced block of the page is an example this test runs.
    CHECK_MESSAGE(page.problems.empty(), joined(page.problems));
    REQUIRE(page.blocks.size() >= 10);

    temp_dir work, tools;  // the page's directory; the tool on PATH and the scripts
    fs::create_directory(tools.path() / "bin");
    fs::create_symlink(fs::absolute(keel::test::keel_cli_path()), tools.path() / "bin" / "keel");

    std::vector<std::pair<std::string, std::string>> vars;
    std::string etcd_unavailable = "this test binary was built without the etcd tests (KEEL_HAS_ETCD)";
    std::string postgres_unavailable = "this test binary was built without the PostgreSQL tests (KEEL_HAS_POSTGRES)";
#if KEEL_HAS_ETCD
    std::unique_ptr<keel::test::etcd_cluster> cluster;
    keel::test::refused_port down;
    etcd_unavailable = keel::test::etcd_cluster::available() ? "" : "no etcd program at " + keel::test::etcd_cluster::binary();
#endif
#if KEEL_HAS_POSTGRES
    const auto pg_why = keel::test::pg_server::unavailable();
    postgres_unavailable = pg_why ? *pg_why : "";
#endif

    std::size_t blocks_run = 0, commands_run = 0;
    std::vector<std::string> skipped;
    int script_number = 0;
    for (const doc_block& b : page.blocks) {
      const std::string where = "docs/cli.md:" + std::to_string(b.line);
      if (b.tagged("etcd") && !etcd_unavailable.empty()) {
        skipped.push_back(where + " (etcd: " + etcd_unavailable + ")");
        continue;
      }
      if (b.tagged("postgres") && !postgres_unavailable.empty()) {
        skipped.push_back(where + " (postgres: " + postgres_unavailable + ")");
        continue;
      }
      auto block_vars = vars;
#if KEEL_HAS_ETCD
      if (b.tagged("etcd")) {
        if (!cluster) cluster = std::make_unique<keel::test::etcd_cluster>(1);
        const std::string url = cluster->endpoint(0);
        block_vars.emplace_back("ENDPOINT", url.substr(url.find("://") + 3));
        block_vars.emplace_back("DOWN", down.host_port());
      }
#endif
#if KEEL_HAS_POSTGRES
      if (b.tagged("postgres")) block_vars.emplace_back("PG", keel::test::shared_pg().conninfo());
#endif
      std::optional<lock_holder> holder;
      if (const std::string db = b.tag_value("lock-holder"); !db.empty()) holder.emplace(work.path(), db);

      const auto steps = run_block(b, work.path(), tools.path() / "bin", block_vars,
                                   tools.path() / ("block-" + std::to_string(++script_number) + ".sh"));
      ++blocks_run;
      CAPTURE(where);
      CHECK_MESSAGE(steps.size() == b.commands.size(), "the block's shell stopped after " << steps.size()
                                                                                            << " of its commands");
      for (std::size_t i = 0; i < b.commands.size() && i < steps.size(); ++i) {
        const doc_command& c = b.commands[i];
        std::vector<std::string> expected;
        for (std::string line : c.output) {
          for (const auto& [name, value] : block_vars) line = replace_all(line, "$" + name, value);
          expected.push_back(line);
        }
        const std::string command = "docs/cli.md:" + std::to_string(c.line) + ": $ " + c.text;
        CAPTURE(command);
        ++commands_run;
        CHECK_MESSAGE(steps[i].status == c.status, "exit status " << steps[i].status << ", the page says " << c.status
                                                                  << "; it printed:\n" << joined(steps[i].output));
        CHECK_MESSAGE(lines_match(expected, 0, steps[i].output, 0),
                      "the page shows:\n" << joined(expected) << "it printed:\n" << joined(steps[i].output));
      }
    }
    KEEL_REPORT("docs/cli.md: " << page.blocks.size() << " example blocks, " << blocks_run << " run ("
                                << commands_run << " commands), " << skipped.size() << " skipped");
    if (!skipped.empty()) {
      std::string why;
      for (const auto& s : skipped) why += (why.empty() ? "" : "; ") + s;
      return keel::test::skip("docs/cli.md examples not run here: " + why);
    }
    CHECK(blocks_run == page.blocks.size());
  }
}

// tests/support/skip.hpp - a test case that cannot run here says so; a case
// whose counts matter prints them (KEEL_REPORT).
//
//   if (::geteuid() != 0) return skip("crash images: needs root (loop devices)");
//
// The reason names the case's subject (doctest does not tell other sources
// which case is running).
//
// skip() prints one line "keel-skip: <reason>" on stdout (and the
// reason as a doctest MESSAGE). scripts/test.sh counts each such line as a
// skipped case and not as a passed one, so a case that could not run is never
// a silent pass. Call it once per case, then return.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <sstream>
#include <string>

namespace keel::test {

inline void skip(const std::string& reason) {
    std::printf("keel-skip: %s\n", reason.c_str());
    std::fflush(stdout);
    MESSAGE("skipped: " << reason);
}

}  // namespace keel::test

// KEEL_REPORT(a << b ...): prints one line "keel-report: <text>" on stdout
// (kept in meson's test log whether the case passes or fails) and the same
// text as a doctest MESSAGE. For the counts a fault or crash test must show
// (crash images, writes checked, lost), not for debugging output.
#define KEEL_REPORT(...)                                              \
    do {                                                              \
        std::ostringstream keel_report_text_;                         \
        keel_report_text_ << __VA_ARGS__;                             \
        std::printf("keel-report: %s\n", keel_report_text_.str().c_str()); \
        std::fflush(stdout);                                          \
        MESSAGE(keel_report_text_.str());                             \
    } while (false)

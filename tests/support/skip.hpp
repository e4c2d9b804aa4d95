// tests/support/skip.hpp - a test case that cannot run here says so.
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
#include <string>

namespace keel::test {

inline void skip(const std::string& reason) {
    std::printf("keel-skip: %s\n", reason.c_str());
    std::fflush(stdout);
    MESSAGE("skipped: " << reason);
}

}  // namespace keel::test

// keel::detail: <windows.h> for keel's Windows branches (included only when
// _WIN32 is defined), without its min/max macros and rarely used parts.
// WIN32_LEAN_AND_MEAN and NOMINMAX are defined only around the include and
// only if the including program had not defined them, so keel changes
// nothing about how the program itself sees <windows.h>, except that a
// later <windows.h> of its own is then already included (it has include
// guards): a program that needs the full <windows.h> or its min/max macros
// includes <windows.h> before any keel header.
#pragma once

#if defined(_WIN32)
#if !defined(NOMINMAX)
#define NOMINMAX
#define KEEL_DEFINED_NOMINMAX
#endif
#if !defined(WIN32_LEAN_AND_MEAN)
#define WIN32_LEAN_AND_MEAN
#define KEEL_DEFINED_WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#if defined(KEEL_DEFINED_NOMINMAX)
#undef NOMINMAX
#undef KEEL_DEFINED_NOMINMAX
#endif
#if defined(KEEL_DEFINED_WIN32_LEAN_AND_MEAN)
#undef WIN32_LEAN_AND_MEAN
#undef KEEL_DEFINED_WIN32_LEAN_AND_MEAN
#endif
#endif

// keel::detail: a per-thread pointer that is handed to a cleanup function
// when its thread exits; POSIX and Windows branches.
//
//   using my_ptr = thread_exit_pointer<&release>;  // void release(void*) noexcept
//   if (!my_ptr::get()) my_ptr::set(new thing);     // release(thing) at thread exit
//
// Why not a thread_local object with a destructor: with mingw-w64's GCC
// (emulated TLS, winpthreads) such a destructor can run after the thread's
// TLS block was freed, so it reads and writes freed memory (seen under wine:
// keel_tests crashed in a memory-store thread's exit). On Windows the pointer
// lives in a fiber-local slot (FlsAlloc) whose callback receives the value
// itself, touching no TLS. Elsewhere it is a thread_local with a destructor.
// The cleanup runs on the exiting thread; it is not run for threads still
// alive at process exit.
#pragma once

#if defined(_WIN32)
#include "../detail/windows.hpp"
#endif

namespace keel::detail {

template <void (*Cleanup)(void*) noexcept>
class thread_exit_pointer {
 public:
  static void* get() noexcept {
#if defined(_WIN32)
    return ::FlsGetValue(index());
#else
    return holder().p;
#endif
  }
  static void set(void* p) noexcept {
#if defined(_WIN32)
    ::FlsSetValue(index(), p);
#else
    holder().p = p;
#endif
  }

 private:
#if defined(_WIN32)
  static void NTAPI on_exit(void* p) noexcept {
    if (p) Cleanup(p);
  }
  static DWORD index() noexcept {
    static const DWORD i = ::FlsAlloc(&on_exit);  // never freed: threads may exit late
    return i;
  }
#else
  struct owner {
    void* p = nullptr;
    ~owner() {
      if (p) Cleanup(p);
    }
  };
  static owner& holder() noexcept {
    thread_local owner o;
    return o;
  }
#endif
};

}  // namespace keel::detail

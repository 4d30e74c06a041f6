// A floor under the thread stacks that libraries ask for (linked into nas_worker only).
//
// Debian's civetweb 1.15 (prometheus-cpp's HTTP server) creates its threads with a fixed 100 KiB
// stack (USE_STACK_SIZE). glibc puts a process's static TLS blocks on every thread's stack and
// refuses a stack that cannot hold them (pthread_create: EINVAL); LibTorch's dependencies bring
// more than 100 KiB of static TLS (a 100 KiB thread fails, a 128 KiB one starts), so the
// worker's metrics exposer could not start ("null context when constructing CivetServer").
// This definition of pthread_attr_setstacksize, exported by the executable, comes before libc's
// for every library in the process: it raises a requested size below 1 MiB to 1 MiB and calls
// libc's. Larger requests, and threads that set no size (8 MiB by default), are unchanged.
#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Fn = int (*)(pthread_attr_t*, size_t);
  static const Fn libc = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  constexpr size_t kFloor = size_t{1} << 20;
  if (libc == nullptr) return 22;  // EINVAL: cannot happen with glibc
  return libc(attr, size < kFloor ? kFloor : size);
}

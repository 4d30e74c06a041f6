// Linked into every program of the ThreadSanitizer build (scripts/sanitize.sh tsan), nowhere
// else. Debian's Abseil is not built with TSan, so TSan cannot see that absl::Mutex, CondVar and
// Notification order memory (their atomics and futex calls run in uninstrumented code): every
// ABSL_GUARDED_BY member touched by two threads would be reported as a race. gRPC 1.51
// synchronises through absl::Mutex too. This file interposes the exported entry points of
// libabsl_synchronization.so (a program's own definitions come first in symbol lookup, also for
// calls made from inside the shared libraries): each calls the real function (dlsym RTLD_NEXT)
// and tells TSan the happens-before edge that the function provides - release on the mutex's
// address before giving it up, acquire after taking it. Locks are modelled as acquire/release
// only (no lock-order checks).
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);

namespace {

void* Real(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found\n", name);
    std::abort();
  }
  return f;
}

template <typename F>
F RealFn(const char* name) {
  return reinterpret_cast<F>(Real(name));
}

}  // namespace

// Each wrapper: the mangled name of the member function (see `nm -D` of the library), `this` as
// the first argument as the Itanium C++ ABI passes it.
#define NAS_ABSL(sym) "_ZN4absl7debian3" sym
#define NAS_ABSL_CONST(sym) "_ZNK4absl7debian3" sym

using absl::Condition;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

// Taking a mutex: acquire after.
#define NAS_LOCK(name, sym)                                     \
  void name(Mutex* m) __asm__(NAS_ABSL(sym));                   \
  void name(Mutex* m) {                                         \
    static auto real = RealFn<void (*)(Mutex*)>(NAS_ABSL(sym)); \
    real(m);                                                    \
    __tsan_acquire(m);                                          \
  }
NAS_LOCK(NasMutexLock, "5Mutex4LockEv")
NAS_LOCK(NasMutexReaderLock, "5Mutex10ReaderLockEv")

#define NAS_UNLOCK(name, sym)                                   \
  void name(Mutex* m) __asm__(NAS_ABSL(sym));                   \
  void name(Mutex* m) {                                         \
    static auto real = RealFn<void (*)(Mutex*)>(NAS_ABSL(sym)); \
    __tsan_release(m);                                          \
    real(m);                                                    \
  }
NAS_UNLOCK(NasMutexUnlock, "5Mutex6UnlockEv")
NAS_UNLOCK(NasMutexReaderUnlock, "5Mutex12ReaderUnlockEv")

#define NAS_TRYLOCK(name, sym)                                  \
  bool name(Mutex* m) __asm__(NAS_ABSL(sym));                   \
  bool name(Mutex* m) {                                         \
    static auto real = RealFn<bool (*)(Mutex*)>(NAS_ABSL(sym)); \
    bool ok = real(m);                                          \
    if (ok) __tsan_acquire(m);                                  \
    return ok;                                                  \
  }
NAS_TRYLOCK(NasMutexTryLock, "5Mutex7TryLockEv")
NAS_TRYLOCK(NasMutexReaderTryLock, "5Mutex13ReaderTryLockEv")

// LockWhen*: returns holding the mutex.
#define NAS_LOCK_WHEN(name, sym, R, Arg)                                            \
  R name(Mutex* m, const Condition& c, Arg a) __asm__(NAS_ABSL(sym));               \
  R name(Mutex* m, const Condition& c, Arg a) {                                     \
    static auto real = RealFn<R (*)(Mutex*, const Condition&, Arg)>(NAS_ABSL(sym)); \
    R r = real(m, c, a);                                                            \
    __tsan_acquire(m);                                                              \
    return r;                                                                       \
  }
NAS_LOCK_WHEN(NasLockWhenWithTimeout, "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE",
              bool, Duration)
NAS_LOCK_WHEN(NasLockWhenWithDeadline, "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE",
              bool, Time)
NAS_LOCK_WHEN(NasReaderLockWhenWithTimeout,
              "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE", bool, Duration)
NAS_LOCK_WHEN(NasReaderLockWhenWithDeadline,
              "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE", bool, Time)

#define NAS_LOCK_WHEN0(name, sym)                                                 \
  void name(Mutex* m, const Condition& c) __asm__(NAS_ABSL(sym));                 \
  void name(Mutex* m, const Condition& c) {                                       \
    static auto real = RealFn<void (*)(Mutex*, const Condition&)>(NAS_ABSL(sym)); \
    real(m, c);                                                                   \
    __tsan_acquire(m);                                                            \
  }
NAS_LOCK_WHEN0(NasLockWhen, "5Mutex8LockWhenERKNS0_9ConditionE")
NAS_LOCK_WHEN0(NasReaderLockWhen, "5Mutex14ReaderLockWhenERKNS0_9ConditionE")

// Await*: called holding the mutex, gives it up while waiting, returns holding it.
void NasAwait(Mutex* m, const Condition& c) __asm__(NAS_ABSL("5Mutex5AwaitERKNS0_9ConditionE"));
void NasAwait(Mutex* m, const Condition& c) {
  static auto real =
      RealFn<void (*)(Mutex*, const Condition&)>(NAS_ABSL("5Mutex5AwaitERKNS0_9ConditionE"));
  __tsan_release(m);
  real(m, c);
  __tsan_acquire(m);
}
#define NAS_AWAIT(name, sym, Arg)                                                      \
  bool name(Mutex* m, const Condition& c, Arg a) __asm__(NAS_ABSL(sym));               \
  bool name(Mutex* m, const Condition& c, Arg a) {                                     \
    static auto real = RealFn<bool (*)(Mutex*, const Condition&, Arg)>(NAS_ABSL(sym)); \
    __tsan_release(m);                                                                 \
    bool r = real(m, c, a);                                                            \
    __tsan_acquire(m);                                                                 \
    return r;                                                                          \
  }
NAS_AWAIT(NasAwaitWithTimeout, "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE", Duration)
NAS_AWAIT(NasAwaitWithDeadline, "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE", Time)

// CondVar::Wait*: gives the mutex up while waiting, returns holding it.
void NasCondVarWait(absl::CondVar* cv, Mutex* m) __asm__(NAS_ABSL("7CondVar4WaitEPNS0_5MutexE"));
void NasCondVarWait(absl::CondVar* cv, Mutex* m) {
  static auto real =
      RealFn<void (*)(absl::CondVar*, Mutex*)>(NAS_ABSL("7CondVar4WaitEPNS0_5MutexE"));
  __tsan_release(m);
  real(cv, m);
  __tsan_acquire(m);
}
#define NAS_CV_WAIT(name, sym, Arg)                                                  \
  bool name(absl::CondVar* cv, Mutex* m, Arg a) __asm__(NAS_ABSL(sym));              \
  bool name(absl::CondVar* cv, Mutex* m, Arg a) {                                    \
    static auto real = RealFn<bool (*)(absl::CondVar*, Mutex*, Arg)>(NAS_ABSL(sym)); \
    __tsan_release(m);                                                               \
    bool r = real(cv, m, a);                                                         \
    __tsan_acquire(m);                                                               \
    return r;                                                                        \
  }
NAS_CV_WAIT(NasCondVarWaitWithTimeout, "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE",
            Duration)
NAS_CV_WAIT(NasCondVarWaitWithDeadline, "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE", Time)

// Notification: Notify releases, the waits acquire. HasBeenNotified() is inline (an atomic load
// in instrumented code), so Notify also releases on the flag's address, which that load
// acquires.
namespace {
void* NotifiedFlag(const Notification* n) {
  // Notification is { Mutex mutex_; std::atomic<bool> notified_yet_; }.
  return reinterpret_cast<char*>(const_cast<Notification*>(n)) + sizeof(Mutex);
}
}  // namespace
void NasNotify(Notification* n) __asm__(NAS_ABSL("12Notification6NotifyEv"));
void NasNotify(Notification* n) {
  static auto real = RealFn<void (*)(Notification*)>(NAS_ABSL("12Notification6NotifyEv"));
  __tsan_release(n);
  __tsan_release(NotifiedFlag(n));
  real(n);
}
void NasWaitForNotification(const Notification* n) __asm__(
    NAS_ABSL_CONST("12Notification19WaitForNotificationEv"));
void NasWaitForNotification(const Notification* n) {
  static auto real = RealFn<void (*)(const Notification*)>(
      NAS_ABSL_CONST("12Notification19WaitForNotificationEv"));
  real(n);
  __tsan_acquire(const_cast<Notification*>(n));
}
#define NAS_NOTIFICATION_WAIT(name, sym, Arg)                                           \
  bool name(const Notification* n, Arg a) __asm__(NAS_ABSL_CONST(sym));                 \
  bool name(const Notification* n, Arg a) {                                             \
    static auto real = RealFn<bool (*)(const Notification*, Arg)>(NAS_ABSL_CONST(sym)); \
    bool r = real(n, a);                                                                \
    if (r) __tsan_acquire(const_cast<Notification*>(n));                                \
    return r;                                                                           \
  }
NAS_NOTIFICATION_WAIT(NasWaitForNotificationWithTimeout,
                      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", Duration)
NAS_NOTIFICATION_WAIT(NasWaitForNotificationWithDeadline,
                      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", Time)

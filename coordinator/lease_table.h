// Workers and leases: who is registered, who is alive, which task is leased to whom until when,
// and which lease ids are current (fencing). Time is the injected clock's, so tests advance it.
//
// A task carries a LeaseSlot (queued, leased, done). Grant leases it to a worker under a new
// lease id (`L<incarnation>-<n>-<8 random characters>`: ids never repeat, not even across
// restarts, since the incarnation is a counter in the store, and cannot be guessed from
// another id, so that only the worker handed a task can report its result) until now + `lease`; Extend (a heartbeat) moves the
// deadline; ExpireIfDue re-queues it once the deadline passed. A lease id is current from
// Grant until Finish, Release, Requeue (the worker handed it back) or expiry: any result, fetch or heartbeat for another id is
// refused by the caller (JobOf is null), so nothing is applied twice. Workers register
// (`w<incarnation>-<n>`), are dead after `worker_timeout` of silence and are forgotten after
// `forget_worker_after` (they then register again).
//
//   LeaseTable leases(options, incarnation);
//   NAS_ASSIGN_OR_RETURN(RegisterWorkerReply r, leases.Register("gpu-box-1", "cuda"));
//   std::string id = leases.Grant(task.slot, "j000001", r.worker_id());
//   const std::string* job = leases.JobOf(id);  // "j000001" while current
//   leases.Extend(task.slot);                   // a heartbeat
//   if (leases.ExpireIfDue(task.slot, id)) ...  // deadline passed: queued again, id not current
//   leases.Finish(task.slot, id);               // the result was applied
//
// Thread-safety: none; a LeaseTable is used with the JobManager's lock held. The slots it is
// handed belong to the caller and are read and written under the same lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nas/worker.pb.h"

namespace nas {

// The lease state of one task.
struct LeaseSlot {
  enum class State { kQueued, kLeased, kDone } state = State::kQueued;
  std::string worker_id;  // while leased
  absl::Time granted;     // while leased: when (the tenant's usage is charged from here)
  absl::Time deadline;    // while leased
};

class LeaseTable {
 public:
  struct Options {
    // A lease lasts this long after it is granted or extended. Default 60 s.
    absl::Duration lease = absl::Seconds(60);
    // Workers are asked to heartbeat this often (RegisterWorkerReply.heartbeat_ms). Default 2 s.
    absl::Duration heartbeat = absl::Seconds(2);
    // A worker silent for this long is dead. Default 20 s.
    absl::Duration worker_timeout = absl::Seconds(20);
    // A dead worker is forgotten this long after it went silent. Default 10 min.
    absl::Duration forget_worker_after = absl::Minutes(10);
    // Registered workers at most; Register beyond it is ResourceExhausted. Default 10000.
    int max_workers = 10000;
    // The clock. Default absl::Now.
    std::function<absl::Time()> clock = [] { return absl::Now(); };
  };

  struct Worker {
    std::string id, name, device;
    std::vector<std::string> latency_devices;  // the latency-table devices it measures as
    bool Measures(absl::string_view d) const {
      for (const std::string& x : latency_devices) {
        if (x == d) return true;
      }
      return false;
    }
    absl::Time last_seen;
    bool dead = false;
  };

  // Ids carry `incarnation` (the coordinator's, from the store).
  LeaseTable(Options options, uint64_t incarnation);

  absl::Time Now() const { return options_.clock(); }

  // Workers.
  // A new worker id, seen now; ResourceExhausted at `max_workers`. The name and device are
  // checked by the caller.
  absl::StatusOr<RegisterWorkerReply> Register(const std::string& name, const std::string& device,
                                               std::vector<std::string> latency_devices = {});
  // Live workers that measure as `device`.
  int LiveMeasuring(absl::string_view device) const;
  // The worker was seen now (it asks for work), and its record; NotFound naming it when unknown.
  absl::StatusOr<const Worker*> Touch(const std::string& worker_id);
  // The worker was seen now and is alive (a heartbeat); NotFound naming it when unknown.
  absl::Status Heartbeat(const std::string& worker_id);
  // The worker, or null.
  const Worker* FindWorker(const std::string& worker_id) const;
  // Marks workers silent for `worker_timeout` dead and forgets those silent for
  // `forget_worker_after`; returns the forgotten ones.
  std::vector<Worker> ExpireWorkers();
  int live_workers() const;
  int dead_workers() const;
  int workers() const { return static_cast<int>(workers_.size()); }

  // Leases.
  // Leases `slot` (queued) to `worker_id` until now + `lease` under a new id, current for
  // `job_id`; returns the id.
  std::string Grant(LeaseSlot& slot, const std::string& job_id, const std::string& worker_id);
  // The leased slot's deadline becomes now + `lease`.
  void Extend(LeaseSlot& slot) { slot.deadline = Now() + options_.lease; }
  // The job of a current lease id, or null (expired, finished, released, unknown).
  const std::string* JobOf(const std::string& lease_id) const {
    auto it = current_.find(lease_id);
    return it == current_.end() ? nullptr : &it->second;
  }
  // The task of `tasks` leased under `lease_id`, or null. T has `LeaseSlot slot` and a
  // `task.lease_id()` (the id Grant returned, kept by the caller).
  template <typename T>
  static T* FindLeased(std::vector<T>& tasks, const std::string& lease_id) {
    for (T& t : tasks) {
      if (t.slot.state == LeaseSlot::State::kLeased && t.task.lease_id() == lease_id) return &t;
    }
    return nullptr;
  }
  // The lease's task is done: the id is no longer current.
  void Finish(LeaseSlot& slot, const std::string& lease_id) {
    current_.erase(lease_id);
    slot.state = LeaseSlot::State::kDone;
  }
  // The id is no longer current (its job failed or was cancelled; its tasks are dropped).
  void Release(const std::string& lease_id) { current_.erase(lease_id); }
  // The worker handed the lease back (it is stopping): the leased slot is queued again at once
  // (no worker), the id no longer current. False, nothing changed, when the slot is not leased.
  bool Requeue(LeaseSlot& slot, const std::string& lease_id);
  // When the leased slot's deadline is before `now`: queued again (no worker; the one it had is
  // moved to `*worker_id` when given), the id no longer current, and true.
  bool ExpireIfDue(LeaseSlot& slot, const std::string& lease_id, absl::Time now,
                   std::string* worker_id = nullptr);
  size_t current_leases() const { return current_.size(); }

 private:
  Options options_;
  uint64_t incarnation_;
  uint64_t next_lease_ = 0;
  static constexpr int kLeaseSuffixChars = 8;
  absl::BitGen gen_;  // seeded by the operating system (Randen)
  uint64_t next_worker_ = 0;
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  // Current lease id -> its job id: exactly the slots in state kLeased.
  absl::flat_hash_map<std::string, std::string> current_;
};

}  // namespace nas

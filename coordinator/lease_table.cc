#include "coordinator/lease_table.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace nas {

LeaseTable::LeaseTable(Options options, uint64_t incarnation)
    : options_(std::move(options)), incarnation_(incarnation) {}

absl::StatusOr<RegisterWorkerReply> LeaseTable::Register(const std::string& name,
                                                         const std::string& device,
                                                         std::vector<std::string> latency_devices) {
  if (static_cast<int>(workers_.size()) >= options_.max_workers) {
    return absl::ResourceExhaustedError(absl::StrCat("workers: ", workers_.size(),
                                                     " registered, the limit (max_workers) is ",
                                                     options_.max_workers));
  }
  auto w = std::make_unique<Worker>();
  w->id = absl::StrCat("w", incarnation_, "-", ++next_worker_);
  w->name = name;
  w->device = device;
  w->latency_devices = std::move(latency_devices);
  w->last_seen = Now();
  RegisterWorkerReply reply;
  reply.set_worker_id(w->id);
  reply.set_heartbeat_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.heartbeat)));
  reply.set_lease_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease)));
  workers_[w->id] = std::move(w);
  return reply;
}

absl::StatusOr<const LeaseTable::Worker*> LeaseTable::Touch(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("worker_id: unknown worker '", worker_id, "' (register again)"));
  }
  it->second->last_seen = Now();
  return it->second.get();
}

absl::Status LeaseTable::Heartbeat(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("worker_id: unknown worker '", worker_id, "' (register again)"));
  }
  it->second->last_seen = Now();
  it->second->dead = false;
  return absl::OkStatus();
}

const LeaseTable::Worker* LeaseTable::FindWorker(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : it->second.get();
}

std::vector<LeaseTable::Worker> LeaseTable::ExpireWorkers() {
  absl::Time now = Now();
  std::vector<Worker> forgotten;
  for (auto it = workers_.begin(); it != workers_.end();) {
    Worker& w = *it->second;
    w.dead = w.last_seen + options_.worker_timeout < now;
    if (w.dead && w.last_seen + options_.forget_worker_after < now) {
      forgotten.push_back(std::move(w));
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  return forgotten;
}

int LeaseTable::live_workers() const {
  int n = 0;
  for (const auto& [id, w] : workers_) n += w->dead ? 0 : 1;
  return n;
}

int LeaseTable::LiveMeasuring(absl::string_view device) const {
  int n = 0;
  for (const auto& [id, w] : workers_) n += !w->dead && w->Measures(device) ? 1 : 0;
  return n;
}

int LeaseTable::dead_workers() const { return workers() - live_workers(); }

std::string LeaseTable::Grant(LeaseSlot& slot, const std::string& job_id,
                              const std::string& worker_id) {
  // The number never repeats (the incarnation is the store's counter); the suffix makes a
  // current id impossible to guess from another one, so a result can only come from the
  // worker that was handed the task.
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  char suffix[kLeaseSuffixChars];
  for (char& c : suffix) c = kAlphabet[absl::Uniform<size_t>(gen_, 0, sizeof(kAlphabet) - 1)];
  std::string id = absl::StrCat("L", incarnation_, "-", ++next_lease_, "-",
                                absl::string_view(suffix, kLeaseSuffixChars));
  slot.state = LeaseSlot::State::kLeased;
  slot.worker_id = worker_id;
  slot.granted = Now();
  slot.deadline = slot.granted + options_.lease;
  current_[id] = job_id;
  return id;
}

bool LeaseTable::Requeue(LeaseSlot& slot, const std::string& lease_id) {
  if (slot.state != LeaseSlot::State::kLeased) return false;
  current_.erase(lease_id);
  slot.state = LeaseSlot::State::kQueued;
  slot.worker_id.clear();
  return true;
}

bool LeaseTable::ExpireIfDue(LeaseSlot& slot, const std::string& lease_id, absl::Time now,
                             std::string* worker_id) {
  if (slot.state != LeaseSlot::State::kLeased || !(slot.deadline < now)) return false;
  current_.erase(lease_id);
  slot.state = LeaseSlot::State::kQueued;
  if (worker_id != nullptr) *worker_id = std::move(slot.worker_id);
  slot.worker_id.clear();
  return true;
}

}  // namespace nas

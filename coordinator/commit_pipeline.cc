#include "coordinator/commit_pipeline.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/time/clock.h"

namespace nas {

CommitPipeline::CommitPipeline(Options options) : options_(std::move(options)) {
  writer_ = std::thread([this] { Loop(); });
}

CommitPipeline::~CommitPipeline() {
  {
    absl::MutexLock lock(options_.mu);
    stopping_ = true;
    work_.SignalAll();
  }
  if (writer_.joinable()) writer_.join();
}

void CommitPipeline::Enqueue(RoundCommit commit, RoundGauges gauges) {
  ++pending_[commit.job_id];
  queue_.push_back({std::move(commit), gauges});
  work_.Signal();
}

void CommitPipeline::Await(const std::string& job_id) {
  while (Pending(job_id) > 0) options_.changed->Wait(options_.mu);
}

void CommitPipeline::Loop() {
  while (true) {
    std::optional<Entry> e;
    {
      absl::MutexLock lock(options_.mu);
      while (queue_.empty() && !stopping_) work_.Wait(options_.mu);
      if (queue_.empty()) return;  // stopping, and everything is written
      e = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Time t0 = absl::Now();
    absl::Status s = options_.store->CommitRound(e->commit);
    double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
    absl::MutexLock lock(options_.mu);
    const std::string& job = e->commit.job_id;
    int dropped = 0;
    if (!s.ok()) {
      // Later rounds of the job must not land on top of a missing one.
      auto later = std::remove_if(queue_.begin(), queue_.end(),
                                  [&](const Entry& x) { return x.commit.job_id == job; });
      dropped = static_cast<int>(std::distance(later, queue_.end()));
      queue_.erase(later, queue_.end());
    }
    auto it = pending_.find(job);
    if (it != pending_.end()) {
      it->second -= 1 + dropped;
      if (it->second <= 0) pending_.erase(it);
    }
    if (options_.on_written) {
      options_.on_written(Written{job, e->commit.round, s, seconds, e->gauges, dropped});
    }
    options_.changed->SignalAll();
  }
}

}  // namespace nas

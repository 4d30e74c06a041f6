// How logs name a task (the coordinator's lease log and the worker's task log say the same):
//
//   Log(absl::StrCat(TaskKind(t), " task, lease ", t.lease_id(), ChainNote(t)));
//   // "weight task, lease l3-17, a chain of 8 steps"
#pragma once

#include <string>

#include "nas/worker.pb.h"

namespace nas {

// "init", "weight", "arch", "final", or "none" for a task without a kind. Also the `kind`
// label of the coordinator's task metrics.
std::string TaskKind(const Task& t);

// ", a chain of N steps" for a chained weight task (WeightTask.chain, N counting the first
// step), else "".
std::string ChainNote(const Task& t);

}  // namespace nas

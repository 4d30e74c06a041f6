#include "proto/task_label.h"

#include "absl/strings/str_cat.h"

namespace nas {

std::string TaskKind(const Task& t) {
  switch (t.kind_case()) {
    case Task::kInit:
      return "init";
    case Task::kWeight:
      return "weight";
    case Task::kArch:
      return "arch";
    case Task::kFinal:
      return "final";
    case Task::kEval:
      return "eval";
    default:
      return "none";
  }
}

std::string ChainNote(const Task& t) {
  const int chain = t.has_weight() ? t.weight().chain_size() : 0;
  return chain > 0 ? absl::StrCat(", a chain of ", chain + 1, " steps") : "";
}

}  // namespace nas

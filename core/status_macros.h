// Small status helpers: Debian's Abseil (20220623) has no RETURN_IF_ERROR / ASSIGN_OR_RETURN.
//
//   NAS_RETURN_IF_ERROR(table.Validate());
//   NAS_ASSIGN_OR_RETURN(auto space, SearchSpace::FromJson(text));
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define NAS_STATUS_CONCAT_INNER_(a, b) a##b
#define NAS_STATUS_CONCAT_(a, b) NAS_STATUS_CONCAT_INNER_(a, b)

#define NAS_RETURN_IF_ERROR(expr)                \
  do {                                           \
    ::absl::Status nas_status_ = (expr);         \
    if (!nas_status_.ok()) return nas_status_;   \
  } while (0)

#define NAS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define NAS_ASSIGN_OR_RETURN(lhs, expr) \
  NAS_ASSIGN_OR_RETURN_IMPL_(NAS_STATUS_CONCAT_(nas_statusor_, __LINE__), lhs, expr)

// The one place LibTorch exceptions become absl::Status (DESIGN.md: only worker/ sees them).
//
//   return TorchCall([&] { return net->forward(x); }, "forward");
#pragma once

#include <torch/torch.h>

#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace nas {

template <typename F>
auto TorchCall(F&& f, const std::string& what)
    -> absl::StatusOr<std::invoke_result_t<F>> {
  try {
    return f();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

inline absl::Status TorchRun(const std::function<void()>& f, const std::string& what) {
  try {
    f();
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace nas

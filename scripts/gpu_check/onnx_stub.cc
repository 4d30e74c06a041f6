// The GPU check's build has no protobuf (the GPU machine lacks it), so it links this instead of
// worker/onnx_export.cc: the task runner's final task (which the GPU checks do not run) then
// fails with Unimplemented instead of exporting ONNX.
#include "worker/onnx_export.h"

namespace nas {

absl::StatusOr<std::string> OnnxFromModule(const NetworkConfig&, const torch::nn::Module&,
                                           const OnnxExportOptions&) {
  return absl::UnimplementedError(
      "ONNX export is not built into the GPU check (scripts/gpu_check: no protobuf)");
}

}  // namespace nas

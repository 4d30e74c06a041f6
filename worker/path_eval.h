// Paths of a trained supernet evaluated with their inherited weights: the accuracy of each path
// on a data set (the validation split: its whole batches, in order), BatchNorm on batch statistics as in the
// search's arch steps, no gradient. The supernet's buffers (BN running statistics) are left as
// they were. What the report's accuracy-latency view plots (core/path_sample.h picks the paths).
//
//   std::vector<double> acc = EvaluatePaths(net, {path_a, path_b}, data.split.valid, 128, kCPU);
#pragma once

#include <torch/types.h>

#include <vector>

#include "worker/data.h"
#include "worker/ops.h"

namespace nas {

std::vector<double> EvaluatePaths(SuperNet& net, const std::vector<std::vector<int>>& paths,
                                  const DataSet& data, int batch_size,
                                  const torch::Device& device);
// The same over every batch of epoch 0 of `batches` (a sequential source; whole batches unless
// the split is smaller than one). A batch the source cannot give throws, naming it.
std::vector<double> EvaluatePaths(SuperNet& net, const std::vector<std::vector<int>>& paths,
                                  BatchSource& batches, const torch::Device& device);

}  // namespace nas

// A small image folder of real files for the worker's tests: Fashion-MNIST test images (Debian's
// dataset-fashion-mnist) written one folder per class ("c0".."c9", so that sorted order is label
// order), even-numbered images as PNG and odd ones as JPEG (quality 95).
#pragma once

#include <stdlib.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "worker/data.h"
#include "worker/image_codec.h"

namespace nas::testing_folder {

// A fresh directory /tmp/<prefix>_XXXXXX for a test suite's files; "" if none could be made.
inline std::string MakeScratchDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
  return mkdtemp(tmpl.data()) == nullptr ? "" : tmpl;
}

// Writes `n` class-balanced images (BalancedSubset with `seed`) under `root` (created), image i
// as c<label>/<i, 4 digits>.png or .jpg; returns them (the file of image i holds row i).
inline absl::StatusOr<DataSet> WriteFashionFolder(const std::string& root, int64_t n,
                                                  uint64_t seed) {
  absl::StatusOr<DataSet> test = LoadDataSet("fashion-mnist", "", /*train=*/false);
  if (!test.ok()) return test.status();
  const DataSet source = BalancedSubset(*test, n, seed);
  for (int64_t i = 0; i < source.size(); ++i) {
    Image g;
    g.width = g.height = 28;
    g.channels = 1;
    torch::Tensor img = source.images[i].contiguous();
    const uint8_t* p = img.data_ptr<uint8_t>();
    g.pixels.assign(p, p + 28 * 28);
    const int label = static_cast<int>(source.labels[i].item<int64_t>());
    const std::string dir = absl::StrCat(root, "/c", label);
    std::filesystem::create_directories(dir);
    char name[32];
    std::snprintf(name, sizeof(name), "/%04lld", static_cast<long long>(i));
    absl::StatusOr<std::string> bytes = i % 2 == 0 ? EncodePng(g) : EncodeJpeg(g, 95);
    if (!bytes.ok()) return bytes.status();
    std::ofstream(dir + name + (i % 2 == 0 ? ".png" : ".jpg"), std::ios::binary) << *bytes;
  }
  return source;
}

}  // namespace nas::testing_folder

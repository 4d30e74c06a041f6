// The layout of the image data set files a worker reads, checked without LibTorch: IDX files
// (MNIST, Fashion-MNIST: an image file with magic 2051, a label file with magic 2049, big-endian
// 32-bit header fields) and CIFAR-10 binary batches (records of 1 label byte + 3x32x32 pixels).
// worker/data.cc reads the files (gunzipping) and copies the pixels into tensors at the offsets
// these functions vouch for; the fuzz targets (fuzz/) feed them arbitrary bytes.
//
//   NAS_ASSIGN_OR_RETURN(IdxLayout l, ParseIdx(images, labels, images_path, labels_path));
//   // pixels: images[kIdxImagesHeaderBytes, + l.count * l.height * l.width), labels from
//   // labels[kIdxLabelsHeaderBytes], one byte each, all below l.num_classes.
//
// Every header field is hostile: dimensions are bounded, size products cannot overflow, and the
// file's actual size must be exactly what the header says. Errors are DataLoss naming the file
// (`*_path`), the field and what was expected.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nas {

inline constexpr int64_t kIdxImagesHeaderBytes = 16;
inline constexpr int64_t kIdxLabelsHeaderBytes = 8;
// Largest image side an IDX file may declare.
inline constexpr int64_t kIdxMaxSide = 4096;
// Largest data file, after decompression: a gzip file that inflates beyond it is refused as it
// is read (a few KB can inflate to gigabytes). MNIST's largest file is 47 MB.
inline constexpr int64_t kMaxDataFileBytes = int64_t{2} << 30;
// One CIFAR-10 record: a label byte and 3x32x32 pixels (channel-major).
inline constexpr int64_t kCifar10RecordBytes = 1 + 3 * 32 * 32;

struct IdxLayout {
  int64_t count = 0;    // images (= labels), 1 .. 2^32 - 1
  int64_t height = 0;   // 1 .. kIdxMaxSide
  int64_t width = 0;    // 1 .. kIdxMaxSide
  int num_classes = 0;  // largest label + 1, 2 .. 256
};

// Checks an IDX image file and its label file (whole contents, already decompressed): magics,
// plausible dimensions, sizes exactly header + payload, as many labels as images, labels not
// all zero.
absl::StatusOr<IdxLayout> ParseIdx(absl::string_view images, absl::string_view labels,
                                   const std::string& images_path, const std::string& labels_path);

// Checks a CIFAR-10 binary batch (whole contents): a non-zero whole number of records, every
// label at most 9. Returns the number of records.
absl::StatusOr<int64_t> ParseCifar10Batch(absl::string_view batch, const std::string& path);

}  // namespace nas

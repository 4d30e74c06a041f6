#include "worker/dataset_format.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace nas {

namespace {

uint32_t BigEndian32(absl::string_view s, size_t off) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data() + off);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

absl::StatusOr<IdxLayout> ParseIdx(absl::string_view img, absl::string_view lab,
                                   const std::string& images_path, const std::string& labels_path) {
  if (img.size() < kIdxImagesHeaderBytes) {
    return absl::DataLossError(absl::StrCat(images_path, ": header: ", img.size(),
                                            " bytes, an IDX image file needs at least 16"));
  }
  if (BigEndian32(img, 0) != 2051) {
    return absl::DataLossError(absl::StrCat(
        images_path, ": magic: expected 2051 (IDX images), got ", BigEndian32(img, 0)));
  }
  // Each field is below 2^32 and the sides at most 2^12, so n * h * w < 2^56: no overflow.
  int64_t n = BigEndian32(img, 4), h = BigEndian32(img, 8), w = BigEndian32(img, 12);
  if (n <= 0 || h <= 0 || w <= 0 || h > kIdxMaxSide || w > kIdxMaxSide) {
    return absl::DataLossError(
        absl::StrCat(images_path, ": dimensions ", n, "x", h, "x", w, " are not plausible"));
  }
  if (static_cast<int64_t>(img.size()) != kIdxImagesHeaderBytes + n * h * w) {
    return absl::DataLossError(absl::StrCat(images_path, ": size: expected ", 16 + n * h * w,
                                            " bytes for ", n, " images of ", h, "x", w, ", got ",
                                            img.size(), " (truncated?)"));
  }
  if (lab.size() < kIdxLabelsHeaderBytes || BigEndian32(lab, 0) != 2049) {
    return absl::DataLossError(absl::StrCat(labels_path, ": magic: expected 2049 (IDX labels)"));
  }
  int64_t nl = BigEndian32(lab, 4);
  if (nl != n) {
    return absl::DataLossError(
        absl::StrCat(labels_path, ": count: ", nl, " labels for ", n, " images in ", images_path));
  }
  if (static_cast<int64_t>(lab.size()) != kIdxLabelsHeaderBytes + n) {
    return absl::DataLossError(absl::StrCat(labels_path, ": size: expected ", 8 + n, " bytes, got ",
                                            lab.size(), " (truncated?)"));
  }
  int max_label = 0;
  for (size_t i = kIdxLabelsHeaderBytes; i < lab.size(); ++i) {
    max_label = std::max<int>(max_label, static_cast<unsigned char>(lab[i]));
  }
  if (max_label < 1) {
    return absl::DataLossError(absl::StrCat(labels_path, ": labels: implausible range"));
  }
  IdxLayout l;
  l.count = n;
  l.height = h;
  l.width = w;
  l.num_classes = max_label + 1;
  return l;
}

absl::StatusOr<int64_t> ParseCifar10Batch(absl::string_view raw, const std::string& path) {
  if (raw.empty() || raw.size() % kCifar10RecordBytes != 0) {
    return absl::DataLossError(absl::StrCat(path, ": size: ", raw.size(),
                                            " bytes is not a multiple of the ", kCifar10RecordBytes,
                                            "-byte CIFAR-10 record (truncated?)"));
  }
  int64_t n = static_cast<int64_t>(raw.size()) / kCifar10RecordBytes;
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<unsigned char>(raw[i * kCifar10RecordBytes]) > 9) {
      return absl::DataLossError(absl::StrCat(path, ": label: values above 9"));
    }
  }
  return n;
}

}  // namespace nas

// ParseIdx and ParseCifar10Batch (worker/dataset_format.h): the headers and sizes of the data
// set files a worker reads. The first input byte picks the format; for IDX the next two bytes
// say where the image file ends and the label file begins.
#include "worker/dataset_format.h"

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string rest = nas::fuzz::Text(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    absl::StatusOr<int64_t> n = nas::ParseCifar10Batch(rest, "batch.bin");
    if (n.ok()) {
      nas::fuzz::Require(*n * nas::kCifar10RecordBytes == static_cast<int64_t>(rest.size()),
                         "CIFAR-10 records cover the file");
    }
    return 0;
  }
  if (rest.size() < 2) return 0;
  size_t split = (static_cast<uint8_t>(rest[0]) << 8 | static_cast<uint8_t>(rest[1]));
  rest = rest.substr(2);
  split = std::min(split, rest.size());
  std::string images = rest.substr(0, split), labels = rest.substr(split);
  absl::StatusOr<nas::IdxLayout> l = nas::ParseIdx(images, labels, "images", "labels");
  if (l.ok()) {
    // What data.cc then copies must lie inside the files.
    nas::fuzz::Require(
        nas::kIdxImagesHeaderBytes + l->count * l->height * l->width ==
                static_cast<int64_t>(images.size()) &&
            nas::kIdxLabelsHeaderBytes + l->count == static_cast<int64_t>(labels.size()) &&
            l->num_classes >= 2 && l->num_classes <= 256,
        "an accepted IDX layout matches the files");
  }
  return 0;
}

// ProbeImage, DecodeImage and ResampleBox (worker/image_codec.h): JPEG (libjpeg-turbo) and PNG
// (libpng) files of an image folder. The first input byte picks the channels and whether to ask
// for a scaled JPEG decode; the rest is the file. Whatever decodes must have the dimensions the
// header declared (or a libjpeg-turbo scale of them) and resample without reading outside it.
#include <vector>

#include "fuzz/fuzz_input.h"
#include "worker/image_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string bytes = nas::fuzz::Text(data + 1, size - 1);
  const int channels = data[0] % 2 == 0 ? 1 : 3;
  const int min_side = (data[0] >> 1) % 4 == 0 ? 0 : 1 + (data[0] >> 3) % 16;
  nas::ImageLimits limits;
  limits.max_pixels = 1 << 20;  // keeps each execution fast; the bound itself is what is tested
  limits.max_side = 4096;
  absl::StatusOr<nas::ImageInfo> info = nas::ProbeImage(bytes, "fuzz.img", limits);
  absl::StatusOr<nas::Image> img =
      nas::DecodeImage(bytes, "fuzz.img", channels, limits, min_side, min_side);
  if (!img.ok()) return 0;
  nas::fuzz::Require(info.ok(), "a decoded image has a header that probes");
  nas::fuzz::Require(img->width >= 1 && img->height >= 1 && img->width <= info->width &&
                         img->height <= info->height && img->channels == channels &&
                         img->pixels.size() == static_cast<size_t>(img->width) * img->height *
                                                   channels,
                     "decoded pixels match the declared dimensions");
  std::vector<float> out(7 * 5 * channels);
  nas::ResampleBox(*img, 0, 0, img->width, img->height, 7, 5, data[0] & 0x80, out.data());
  for (float v : out) nas::fuzz::Require(v >= -0.01f && v <= 255.01f, "resampled values in range");
  return 0;
}

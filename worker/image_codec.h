// JPEG and PNG decoding and encoding with Debian's libraries (libjpeg-turbo's TurboJPEG API,
// libpng), and the resampling the image-folder transforms use. No LibTorch: pixels are plain
// interleaved 8-bit buffers (height x width x channels).
//
//   NAS_ASSIGN_OR_RETURN(std::string bytes, ReadImageFile(path, limits));
//   NAS_ASSIGN_OR_RETURN(ImageInfo info, ProbeImage(bytes, path, limits));   // header only
//   NAS_ASSIGN_OR_RETURN(Image img, DecodeImage(bytes, path, /*channels=*/3, limits,
//                                               /*min_width=*/96, /*min_height=*/96));
//
// The format comes from the magic bytes, never from the file name. Every file is hostile: its
// size, its declared dimensions and its pixel count (decompression bombs) are checked against
// ImageLimits before anything is allocated; a corrupt or truncated file (libjpeg-turbo warnings
// included: a JPEG missing its tail decodes to grey otherwise), a bad CRC in a PNG's critical
// chunk, or an unsupported variant (12-bit JPEG) is DataLoss or InvalidArgument naming the file,
// the problem and the limit. Neither library's default error handler (which would call exit() or
// print) is used: TurboJPEG's error returns, and libpng's longjmp error path with a handler that
// records the message. Thread-safe: every call has its own decoder.
//
// CMYK and YCCK JPEGs (ImageNet's training set holds 22) are colour images: libjpeg-turbo decodes
// them to CMYK (YCCK converted by libjpeg-turbo itself), and each pixel becomes R = C*K/255,
// G = M*K/255, B = Y*K/255, rounded, as OpenCV converts them. This assumes the values are stored
// inverted (255 = no ink), as Adobe (Photoshop) writes them, which practically every CMYK JPEG
// is; a file with non-inverted CMYK decodes to a colour negative. No colour profile is applied.
// The CMYK decode needs 4 bytes a pixel (converted in place), under the same pixel limit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nas {

// Bounds on one image file. Defaults in the comments.
struct ImageLimits {
  // Largest file read, in bytes. Default 64 MiB.
  int64_t max_file_bytes = int64_t{64} << 20;
  // Largest width x height a header may declare (decompression bombs: a few KB of PNG or JPEG can
  // declare gigapixels). Default 89,478,485, PIL's own warning threshold.
  int64_t max_pixels = 89'478'485;
  // Largest width or height. Default 65,500 (JPEG's own limit).
  int max_side = 65'500;
};

enum class ImageFormat { kJpeg, kPng };
const char* ImageFormatName(ImageFormat f);

// What a header says, before decoding.
struct ImageInfo {
  ImageFormat format = ImageFormat::kJpeg;
  int width = 0;
  int height = 0;
  int channels = 0;  // as stored: 1 (grey) or 3 (colour, CMYK JPEG too); PNG alpha is not counted
};

// Decoded pixels, interleaved: pixels[(y * width + x) * channels + c].
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;
};

// Reads a whole file of at most limits.max_file_bytes. An empty file is DataLoss; an unreadable
// one (missing, no permission, a directory) NotFound or PermissionDenied naming it and why.
absl::StatusOr<std::string> ReadImageFile(const std::string& path, const ImageLimits& limits);

// The format (by magic bytes) and the header's dimensions, checked against `limits`.
absl::StatusOr<ImageInfo> ProbeImage(absl::string_view bytes, const std::string& path,
                                     const ImageLimits& limits);

// Decodes to `channels` (1: grey, luma of a colour image; 3: RGB, grey replicated; PNG alpha is
// dropped, 16-bit PNG reduced to 8 bits, palettes expanded, CMYK JPEG converted as above). For a
// JPEG, when min_width and min_height are > 0, decodes at the smallest of libjpeg-turbo's scaling
// factors (n/8, at most 1) that still gives at least min_width x min_height (DCT-domain scaling:
// much less work when the target is much smaller than the image). `path` only names the file in
// errors.
absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const std::string& path, int channels,
                                  const ImageLimits& limits, int min_width = 0, int min_height = 0);

// The scaled size DecodeImage uses for a JPEG of width x height, given the minimum it must keep.
void JpegScaledSize(int width, int height, int min_width, int min_height, int* out_width,
                    int* out_height);

// Encoders (for tests and benchmark folders): baseline JPEG (4:2:0 for colour) and 8-bit PNG.
absl::StatusOr<std::string> EncodeJpeg(const Image& image, int quality);
absl::StatusOr<std::string> EncodePng(const Image& image);

// Resamples the box [x0, x1) x [y0, y1) of `src` (source pixel coordinates, fractional allowed)
// to out_width x out_height with PIL's antialiased bilinear filter (a triangle filter widened by
// the downscale factor, as torchvision's PIL transforms use), mirrored left-right when `flip`.
// Writes out_height x out_width x src.channels floats in [0, 255] to `out`.
void ResampleBox(const Image& src, double x0, double y0, double x1, double y1, int out_width,
                 int out_height, bool flip, float* out);

}  // namespace nas

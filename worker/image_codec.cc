#include "worker/image_codec.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace nas {

namespace {

constexpr unsigned char kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

bool IsPng(absl::string_view b) {
  return b.size() >= 8 && std::memcmp(b.data(), kPngMagic, 8) == 0;
}
bool IsJpeg(absl::string_view b) {
  return b.size() >= 3 && static_cast<unsigned char>(b[0]) == 0xFF &&
         static_cast<unsigned char>(b[1]) == 0xD8 && static_cast<unsigned char>(b[2]) == 0xFF;
}

absl::Status CheckDims(const std::string& path, int64_t w, int64_t h, const ImageLimits& limits) {
  if (w <= 0 || h <= 0) {
    return absl::DataLossError(absl::StrCat(path, ": header declares a ", w, "x", h, " image"));
  }
  if (w > limits.max_side || h > limits.max_side) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", w, "x", h, " exceeds the limit of ",
                                                   limits.max_side, " pixels a side"));
  }
  if (w * h > limits.max_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", w, "x", h, " = ", w * h, " pixels exceeds the limit of ",
                     limits.max_pixels, " pixels (decompression bomb?)"));
  }
  return absl::OkStatus();
}

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// ---- JPEG (TurboJPEG) ----

struct TjHandle {
  explicit TjHandle(tjhandle h) : h(h) {}
  ~TjHandle() {
    if (h != nullptr) tjDestroy(h);
  }
  tjhandle h;
};

absl::StatusOr<ImageInfo> ProbeJpeg(absl::string_view bytes, const std::string& path,
                                    const ImageLimits& limits, tjhandle tj, int* colorspace) {
  int w = 0, h = 0, subsamp = 0, cs = 0;
  if (tjDecompressHeader3(tj, reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<unsigned long>(bytes.size()), &w, &h, &subsamp, &cs) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt JPEG header: ", tjGetErrorStr2(tj)));
  }
  if (auto s = CheckDims(path, w, h, limits); !s.ok()) return s;
  if (colorspace != nullptr) *colorspace = cs;
  return ImageInfo{ImageFormat::kJpeg, w, h, cs == TJCS_GRAY ? 1 : 3};
}

// ITU-R 601 luma in libjpeg's fixed point (its RGB-to-grey conversion; the coefficients of the
// PNG path's png_set_rgb_to_gray_fixed).
uint8_t Luma(int r, int g, int b) {
  return static_cast<uint8_t>((19595 * r + 38470 * g + 7471 * b + 32768) >> 16);
}

// Converts `n` CMYK pixels (4 bytes each, as libjpeg returns an Adobe CMYK JPEG: inverted, 255 =
// no ink) at the front of `px` to `channels` (3: RGB, 1: luma) bytes each, in place: R = C*K/255,
// G = M*K/255, B = Y*K/255, rounded (OpenCV's conversion). Pixel i is read before it is written
// and the write ends before pixel i + 1 starts, so one buffer of 4 bytes a pixel suffices.
void CmykToRgbInPlace(uint8_t* px, size_t n, int channels) {
  for (size_t i = 0; i < n; ++i) {
    const int c = px[4 * i], m = px[4 * i + 1], y = px[4 * i + 2], k = px[4 * i + 3];
    const int r = (c * k + 127) / 255, g = (m * k + 127) / 255, b = (y * k + 127) / 255;
    if (channels == 1) {
      px[i] = Luma(r, g, b);
    } else {
      px[3 * i] = static_cast<uint8_t>(r);
      px[3 * i + 1] = static_cast<uint8_t>(g);
      px[3 * i + 2] = static_cast<uint8_t>(b);
    }
  }
}

absl::StatusOr<Image> DecodeJpeg(absl::string_view bytes, const std::string& path, int channels,
                                 const ImageLimits& limits, int min_width, int min_height) {
  TjHandle tj(tjInitDecompress());
  if (tj.h == nullptr) return absl::InternalError("tjInitDecompress failed");
  int colorspace = 0;
  auto info = ProbeJpeg(bytes, path, limits, tj.h, &colorspace);
  if (!info.ok()) return info.status();
  // libjpeg-turbo decodes a CMYK or YCCK JPEG only to CMYK (converting YCCK itself): 4 bytes a
  // pixel, converted in place. The pixel count was bounded by ProbeJpeg as for any JPEG.
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  Image img;
  img.channels = channels;
  if (min_width > 0 && min_height > 0) {
    JpegScaledSize(info->width, info->height, min_width, min_height, &img.width, &img.height);
  } else {
    img.width = info->width;
    img.height = info->height;
  }
  const size_t n = static_cast<size_t>(img.width) * img.height;
  img.pixels.resize(n * (cmyk ? 4 : channels));
  const int format = cmyk ? TJPF_CMYK : channels == 1 ? TJPF_GRAY : TJPF_RGB;
  // STOPONWARNING: a truncated file is an error, not an image with a grey tail; LIMITSCANS: a
  // progressive JPEG with thousands of scans (a CPU bomb) is refused.
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  if (tjDecompress2(tj.h, reinterpret_cast<const unsigned char*>(bytes.data()),
                    static_cast<unsigned long>(bytes.size()), img.pixels.data(), img.width, 0,
                    img.height, format, flags) != 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": corrupt or truncated JPEG: ", tjGetErrorStr2(tj.h)));
  }
  if (cmyk) {
    CmykToRgbInPlace(img.pixels.data(), n, channels);
    img.pixels.resize(n * channels);
  }
  return img;
}

// ---- PNG (libpng) ----

// Everything the longjmp path touches lives here, outside the frame that calls setjmp.
struct PngReadState {
  const unsigned char* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  char error[256] = {0};
  std::vector<png_bytep> rows;
};

void PngError(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(st->error, sizeof(st->error), "%s", msg);
  png_longjmp(png, 1);
}
void PngWarning(png_structp, png_const_charp) {}

void PngRead(png_structp png, png_bytep out, png_size_t n) {
  auto* st = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (n > st->size - st->pos) png_error(png, "file ends early (truncated)");
  std::memcpy(out, st->data + st->pos, n);
  st->pos += n;
}

// Returns false with st->error set on failure. No object with a destructor is created between
// setjmp and the end of this function.
bool PngDecodeRaw(PngReadState* st, int channels, const ImageLimits& limits, Image* img) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, PngError, PngWarning);
  if (png == nullptr) {
    std::snprintf(st->error, sizeof(st->error), "png_create_read_struct failed");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(st->error, sizeof(st->error), "png_create_info_struct failed");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, st, PngRead);
  png_set_user_limits(png, limits.max_side, limits.max_side);
  png_set_chunk_malloc_max(png, 8 << 20);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (static_cast<int64_t>(w) * h > limits.max_pixels) png_error(png, "too many pixels");
  int color = png_get_color_type(png, info);
  int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  const bool grey = color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA;
  if (grey && channels == 3) png_set_gray_to_rgb(png);
  // ITU-R 601 luma, as PIL's convert("L") and a grey JPEG's Y.
  if (!grey && channels == 1) png_set_rgb_to_gray_fixed(png, 1, 29900, 58700);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * channels) {
    png_error(png, "unexpected row size after conversion");
  }
  img->width = static_cast<int>(w);
  img->height = static_cast<int>(h);
  img->channels = channels;
  img->pixels.resize(static_cast<size_t>(w) * h * channels);
  st->rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) st->rows[y] = img->pixels.data() + size_t{y} * w * channels;
  png_read_image(png, st->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

absl::StatusOr<ImageInfo> ProbePng(absl::string_view bytes, const std::string& path,
                                   const ImageLimits& limits) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 8 + 8 + 13 || std::memcmp(p + 12, "IHDR", 4) != 0 || Be32(p + 8) != 13) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt PNG: no IHDR chunk"));
  }
  int64_t w = Be32(p + 16), h = Be32(p + 20);
  if (auto s = CheckDims(path, w, h, limits); !s.ok()) return s;
  int color = p[25];
  return ImageInfo{ImageFormat::kPng, static_cast<int>(w), static_cast<int>(h),
                   (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3};
}

absl::StatusOr<Image> DecodePng(absl::string_view bytes, const std::string& path, int channels,
                                const ImageLimits& limits) {
  if (auto info = ProbePng(bytes, path, limits); !info.ok()) return info.status();
  PngReadState st;
  st.data = reinterpret_cast<const unsigned char*>(bytes.data());
  st.size = bytes.size();
  Image img;
  if (!PngDecodeRaw(&st, channels, limits, &img)) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt or truncated PNG: ", st.error));
  }
  return img;
}

struct PngWriteState {
  std::string out;
  char error[256] = {0};
  std::vector<png_bytep> rows;
};

void PngWriteError(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngWriteState*>(png_get_error_ptr(png));
  std::snprintf(st->error, sizeof(st->error), "%s", msg);
  png_longjmp(png, 1);
}
void PngWrite(png_structp png, png_bytep data, png_size_t n) {
  static_cast<PngWriteState*>(png_get_io_ptr(png))->out.append(reinterpret_cast<char*>(data), n);
}
void PngFlush(png_structp) {}

bool PngEncodeRaw(PngWriteState* st, const Image& img) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, st, PngWriteError, PngWarning);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, st, PngWrite, PngFlush);
  png_set_IHDR(png, info, img.width, img.height, 8,
               img.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  st->rows.resize(img.height);
  for (int y = 0; y < img.height; ++y) {
    st->rows[y] = const_cast<png_bytep>(img.pixels.data()) + size_t(y) * img.width * img.channels;
  }
  png_write_image(png, st->rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// ---- resampling (PIL's ImagingResample with the bilinear filter) ----

struct Taps {
  std::vector<int> start;  // first source index of each output index
  std::vector<int> count;  // number of taps
  std::vector<float> w;    // ksize weights per output index
  int ksize = 0;
};

Taps ComputeTaps(double in0, double in1, int in_size, int out_size) {
  Taps t;
  const double scale = (in1 - in0) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(out_size);
  t.count.resize(out_size);
  t.w.assign(static_cast<size_t>(out_size) * t.ksize, 0.f);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    xmax = std::clamp(xmax, 0, t.ksize);
    if (xmax == 0) {  // a box entirely outside the image (cannot happen for valid boxes)
      xmin = std::clamp(static_cast<int>(center), 0, in_size - 1);
      xmax = 1;
    }
    float* k = &t.w[static_cast<size_t>(xx) * t.ksize];
    double total = 0;
    for (int x = 0; x < xmax; ++x) {
      double d = std::fabs((x + xmin - center + 0.5) * ss);
      double v = d < 1.0 ? 1.0 - d : 0.0;
      k[x] = static_cast<float>(v);
      total += v;
    }
    if (total > 0) {
      for (int x = 0; x < xmax; ++x) k[x] = static_cast<float>(k[x] / total);
    } else {
      k[0] = 1.f;
    }
    t.start[xx] = xmin;
    t.count[xx] = xmax;
  }
  return t;
}

}  // namespace

const char* ImageFormatName(ImageFormat f) { return f == ImageFormat::kJpeg ? "JPEG" : "PNG"; }

absl::StatusOr<std::string> ReadImageFile(const std::string& path, const ImageLimits& limits) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    std::string msg = absl::StrCat(path, ": cannot open: ", std::strerror(e));
    if (e == EACCES || e == EPERM) return absl::PermissionDeniedError(msg);
    return absl::NotFoundError(msg);
  }
  struct stat sb;
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    return absl::NotFoundError(absl::StrCat(path, ": not a regular file"));
  }
  if (sb.st_size > limits.max_file_bytes) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", sb.st_size,
                                                   " bytes exceeds the limit of ",
                                                   limits.max_file_bytes, " bytes an image"));
  }
  std::string out(static_cast<size_t>(sb.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      return absl::DataLossError(absl::StrCat(
          path, ": read failed after ", got, " bytes: ", n < 0 ? std::strerror(e) : "file shrank"));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (out.empty()) return absl::DataLossError(absl::StrCat(path, ": empty file (0 bytes)"));
  return out;
}

absl::StatusOr<ImageInfo> ProbeImage(absl::string_view bytes, const std::string& path,
                                     const ImageLimits& limits) {
  if (IsJpeg(bytes)) {
    TjHandle tj(tjInitDecompress());
    if (tj.h == nullptr) return absl::InternalError("tjInitDecompress failed");
    return ProbeJpeg(bytes, path, limits, tj.h, nullptr);
  }
  if (IsPng(bytes)) return ProbePng(bytes, path, limits);
  if (bytes.empty()) return absl::DataLossError(absl::StrCat(path, ": empty file (0 bytes)"));
  return absl::DataLossError(
      absl::StrCat(path, ": not a JPEG or PNG file (unrecognised magic bytes)"));
}

absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const std::string& path, int channels,
                                  const ImageLimits& limits, int min_width, int min_height) {
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat("channels: ", channels, " is not 1 or 3"));
  }
  if (IsJpeg(bytes)) return DecodeJpeg(bytes, path, channels, limits, min_width, min_height);
  if (IsPng(bytes)) return DecodePng(bytes, path, channels, limits);
  return ProbeImage(bytes, path, limits).status();  // the error for an unknown format
}

void JpegScaledSize(int width, int height, int min_width, int min_height, int* out_width,
                    int* out_height) {
  *out_width = width;
  *out_height = height;
  int n = 0;
  tjscalingfactor* sf = tjGetScalingFactors(&n);
  if (sf == nullptr) return;
  for (int i = 0; i < n; ++i) {
    if (sf[i].num > sf[i].denom) continue;  // never upscale
    int w = TJSCALED(width, sf[i]), h = TJSCALED(height, sf[i]);
    if (w >= min_width && h >= min_height &&
        static_cast<int64_t>(w) * h < static_cast<int64_t>(*out_width) * *out_height) {
      *out_width = w;
      *out_height = h;
    }
  }
}

absl::StatusOr<std::string> EncodeJpeg(const Image& image, int quality) {
  if ((image.channels != 1 && image.channels != 3) || image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != size_t(image.width) * image.height * image.channels) {
    return absl::InvalidArgumentError("EncodeJpeg: malformed image");
  }
  TjHandle tj(tjInitCompress());
  if (tj.h == nullptr) return absl::InternalError("tjInitCompress failed");
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (tjCompress2(tj.h, image.pixels.data(), image.width, 0, image.height,
                  image.channels == 1 ? TJPF_GRAY : TJPF_RGB, &buf, &size,
                  image.channels == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, 0) != 0) {
    std::string err = tjGetErrorStr2(tj.h);
    tjFree(buf);
    return absl::InternalError(absl::StrCat("tjCompress2: ", err));
  }
  std::string out(reinterpret_cast<char*>(buf), size);
  tjFree(buf);
  return out;
}

absl::StatusOr<std::string> EncodePng(const Image& image) {
  if ((image.channels != 1 && image.channels != 3) || image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != size_t(image.width) * image.height * image.channels) {
    return absl::InvalidArgumentError("EncodePng: malformed image");
  }
  PngWriteState st;
  if (!PngEncodeRaw(&st, image)) return absl::InternalError(absl::StrCat("libpng: ", st.error));
  return std::move(st.out);
}

void ResampleBox(const Image& src, double x0, double y0, double x1, double y1, int out_width,
                 int out_height, bool flip, float* out) {
  const int c = src.channels;
  const Taps tx = ComputeTaps(x0, x1, src.width, out_width);
  const Taps ty = ComputeTaps(y0, y1, src.height, out_height);
  const int row0 = ty.start[0];
  int row1 = row0;
  for (int y = 0; y < out_height; ++y) row1 = std::max(row1, ty.start[y] + ty.count[y]);
  // Horizontal pass over the rows the vertical pass reads.
  thread_local std::vector<float> tmp;
  tmp.resize(static_cast<size_t>(row1 - row0) * out_width * c);
  for (int y = row0; y < row1; ++y) {
    const uint8_t* in = src.pixels.data() + static_cast<size_t>(y) * src.width * c;
    float* o = tmp.data() + static_cast<size_t>(y - row0) * out_width * c;
    for (int xx = 0; xx < out_width; ++xx) {
      const float* k = &tx.w[static_cast<size_t>(xx) * tx.ksize];
      const uint8_t* p = in + static_cast<size_t>(tx.start[xx]) * c;
      float* d = o + static_cast<size_t>(flip ? out_width - 1 - xx : xx) * c;
      if (c == 3) {
        float r = 0, g = 0, b = 0;
        for (int j = 0; j < tx.count[xx]; ++j) {
          r += k[j] * p[3 * j];
          g += k[j] * p[3 * j + 1];
          b += k[j] * p[3 * j + 2];
        }
        d[0] = r;
        d[1] = g;
        d[2] = b;
      } else {
        for (int ch = 0; ch < c; ++ch) {
          float s = 0;
          for (int j = 0; j < tx.count[xx]; ++j) s += k[j] * p[c * j + ch];
          d[ch] = s;
        }
      }
    }
  }
  const size_t row = static_cast<size_t>(out_width) * c;
  for (int yy = 0; yy < out_height; ++yy) {
    const float* k = &ty.w[static_cast<size_t>(yy) * ty.ksize];
    float* o = out + yy * row;
    std::fill(o, o + row, 0.f);
    for (int j = 0; j < ty.count[yy]; ++j) {
      const float* in = tmp.data() + static_cast<size_t>(ty.start[yy] + j - row0) * row;
      const float kw = k[j];
      for (size_t i = 0; i < row; ++i) o[i] += kw * in[i];
    }
  }
}

}  // namespace nas

// Image folders on real files: Fashion-MNIST test images written out per class as JPEG and PNG
// with libjpeg-turbo and libpng (grey and tinted colour, some resized), read back through the
// scan, the split, the decoders, the transforms and the prefetching loader; and hostile files.
#include "worker/image_folder.h"

#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "worker/dataset_format.h"

// After <cstdio>: libjpeg's header needs FILE.
#include <jpeglib.h>

namespace nas {
namespace {

namespace fs = std::filesystem;

// Fashion-MNIST's class names: sorted, they are not in label order, which the scan must follow.
const char* const kClassNames[10] = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal",  "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
constexpr int kPerClass = 12;

std::string Gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
  gzclose(f);
  return out;
}

void WriteFile(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Nearest-neighbour upscale of a grey image to w x h, tinted to colour when channels == 3.
Image Variant(const Image& grey, int w, int h, int channels, int tint) {
  Image out;
  out.width = w;
  out.height = h;
  out.channels = channels;
  out.pixels.resize(static_cast<size_t>(w) * h * channels);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t v = grey.pixels[(y * grey.height / h) * grey.width + x * grey.width / w];
      for (int c = 0; c < channels; ++c) {
        int t = channels == 1 ? v : (c == tint % 3 ? v : v * (2 + c) / 5);
        out.pixels[(static_cast<size_t>(y) * w + x) * channels + c] = static_cast<uint8_t>(t);
      }
    }
  }
  return out;
}

double MeanAbsDiff(const Image& a, const Image& b) {
  double s = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) s += std::abs(a.pixels[i] - b.pixels[i]);
  return s / a.pixels.size();
}

class ImageFolderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/nas_image_folder_test_XXXXXX";
    root_ = new std::string(mkdtemp(tmpl));
    originals_ = new std::map<std::string, Image>();
    const std::string dir = "/usr/share/datasets/fashion-mnist/";
    std::string img = Gunzip(dir + "t10k-images-idx3-ubyte.gz");
    std::string lab = Gunzip(dir + "t10k-labels-idx1-ubyte.gz");
    auto layout = ParseIdx(img, lab, "images", "labels");
    ASSERT_TRUE(layout.ok()) << layout.status() << " (Debian's dataset-fashion-mnist)";
    int written[10] = {0};
    const std::string folder = *root_ + "/fmnist";
    for (int64_t i = 0; i < layout->count; ++i) {
      int label = static_cast<uint8_t>(lab[kIdxLabelsHeaderBytes + i]);
      int k = written[label];
      if (k >= kPerClass) continue;
      ++written[label];
      Image g;
      g.width = g.height = 28;
      g.channels = 1;
      const char* px = img.data() + kIdxImagesHeaderBytes + i * 28 * 28;
      g.pixels.assign(px, px + 28 * 28);
      std::string rel = std::string(kClassNames[label]) + "/";
      std::string bytes;
      Image kept;
      switch (k % 4) {
        case 0:  // grey PNG, as is
          kept = g;
          bytes = *EncodePng(kept);
          rel += "g" + std::to_string(k) + ".png";
          break;
        case 1:  // colour PNG, resized; the name says JPEG (format by magic bytes)
          kept = Variant(g, 56, 42, 3, k);
          bytes = *EncodePng(kept);
          rel += "c" + std::to_string(k) + ".jpg";
          break;
        case 2:  // grey JPEG, as is
          kept = g;
          bytes = *EncodeJpeg(kept, 95);
          rel += "g" + std::to_string(k) + ".jpeg";
          break;
        default:  // colour JPEG, upscaled (scaled decoding applies)
          kept = Variant(g, 120, 90, 3, k);
          bytes = *EncodeJpeg(kept, 95);
          rel += (k == 11 ? "nested/deeper/" : "") + std::string("c") + std::to_string(k) + ".JPEG";
      }
      WriteFile(folder + "/" + rel, bytes);
      (*originals_)[rel] = kept;
    }
    WriteFile(folder + "/Bag/.DS_Store", "junk");
    WriteFile(folder + "/README.txt", "not a class");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
    delete originals_;
  }
  static std::string Folder() { return *root_ + "/fmnist"; }

  static std::string* root_;
  static std::map<std::string, Image>* originals_;
};
std::string* ImageFolderTest::root_ = nullptr;
std::map<std::string, Image>* ImageFolderTest::originals_ = nullptr;

TEST_F(ImageFolderTest, ScanSortsClassesLikeTorchvisionAndSkipsHidden) {
  auto f = ScanImageFolder(Folder());
  ASSERT_TRUE(f.ok()) << f.status();
  std::vector<std::string> want(kClassNames, kClassNames + 10);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(f->classes, want);
  EXPECT_EQ(f->classes[0], "Ankle boot");
  ASSERT_EQ(f->size(), 10 * kPerClass);
  EXPECT_EQ(f->hidden_skipped, 1);
  for (int64_t i = 0; i < f->size(); ++i) {
    const std::string cls = f->files[i].substr(0, f->files[i].find('/'));
    EXPECT_EQ(f->classes[f->labels[i]], cls) << f->files[i];
    EXPECT_TRUE(originals_->count(f->files[i])) << f->files[i];
    if (i > 0 && f->labels[i] == f->labels[i - 1]) EXPECT_LT(f->files[i - 1], f->files[i]);
  }
}

TEST_F(ImageFolderTest, PngRoundTripsExactlyAndJpegWithinTolerance) {
  ImageLimits limits;
  int png = 0, jpeg = 0;
  for (const auto& [rel, orig] : *originals_) {
    const std::string path = Folder() + "/" + rel;
    auto bytes = ReadImageFile(path, limits);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    auto info = ProbeImage(*bytes, path, limits);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->width, orig.width);
    EXPECT_EQ(info->height, orig.height);
    EXPECT_EQ(info->channels, orig.channels);
    auto img = DecodeImage(*bytes, path, orig.channels, limits);
    ASSERT_TRUE(img.ok()) << img.status();
    ASSERT_EQ(img->pixels.size(), orig.pixels.size());
    if (info->format == ImageFormat::kPng) {
      ++png;
      EXPECT_EQ(img->pixels, orig.pixels) << rel;
    } else {
      ++jpeg;
      EXPECT_LT(MeanAbsDiff(*img, orig), 4.0) << rel;
    }
    // The other channel count: grey replicated to RGB, colour to luma.
    const int other = orig.channels == 1 ? 3 : 1;
    auto conv = DecodeImage(*bytes, path, other, limits);
    ASSERT_TRUE(conv.ok()) << conv.status();
    ASSERT_EQ(conv->pixels.size(), orig.pixels.size() / orig.channels * other);
    if (orig.channels == 1 && info->format == ImageFormat::kPng) {
      for (size_t p = 0; p < orig.pixels.size(); ++p) {
        ASSERT_EQ(conv->pixels[3 * p], orig.pixels[p]);
        ASSERT_EQ(conv->pixels[3 * p + 2], orig.pixels[p]);
      }
    }
  }
  EXPECT_EQ(png, 60);
  EXPECT_EQ(jpeg, 60);
}

TEST_F(ImageFolderTest, ScaledJpegDecodingPicksTheSmallestScaleCoveringTheTarget) {
  int w = 0, h = 0;
  JpegScaledSize(400, 300, 96, 96, &w, &h);  // 3/8 gives 150x113, 1/4 gives 100x75 < 96
  EXPECT_EQ(w, 150);
  EXPECT_EQ(h, 113);
  JpegScaledSize(400, 300, 100, 75, &w, &h);
  EXPECT_EQ(w, 100);
  EXPECT_EQ(h, 75);
  JpegScaledSize(400, 300, 500, 10, &w, &h);  // never upscales
  EXPECT_EQ(w, 400);
  EXPECT_EQ(h, 300);

  const std::string rel = "Coat/c3.JPEG";
  const Image& orig = originals_->at(rel);  // 120 x 90
  auto bytes = ReadImageFile(Folder() + "/" + rel, {});
  ASSERT_TRUE(bytes.ok());
  auto small = DecodeImage(*bytes, rel, 3, {}, 30, 20);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->width, 30);
  EXPECT_EQ(small->height, 23);
  // Close to a box-filtered downscale of the original.
  double diff = 0;
  for (int y = 0; y < 22; ++y) {
    for (int x = 0; x < 30; ++x) {
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int dy = 0; dy < 4; ++dy) {
          for (int dx = 0; dx < 4; ++dx) {
            s += orig.pixels[((y * 4 + dy) * 120 + x * 4 + dx) * 3 + c];
          }
        }
        diff += std::abs(s / 16 - small->pixels[(y * 30 + x) * 3 + c]);
      }
    }
  }
  EXPECT_LT(diff / (22 * 30 * 3), 8.0);
}

TEST_F(ImageFolderTest, RandomResizedCropFollowsTorchvisionsRules) {
  TransformOptions t = TrainTransform(96, 96, 3, {}, {});
  int flips = 0, fallbacks = 0;
  for (int64_t i = 0; i < 2000; ++i) {
    CropPlan p = PlanCrop(400, 300, t, 7, 0, i);
    ASSERT_GE(p.x0, 0);
    ASSERT_GE(p.y0, 0);
    ASSERT_LE(p.x1, 400);
    ASSERT_LE(p.y1, 300);
    const double w = p.x1 - p.x0, h = p.y1 - p.y0, area = w * h / (400.0 * 300.0);
    EXPECT_EQ(w, std::floor(w));  // whole pixels, as torchvision's crop
    if (area > 0.999) ++fallbacks;
    EXPECT_GE(area, 0.08 * 0.97) << i;
    EXPECT_GE(w / h, 0.75 * 0.97);
    EXPECT_LE(w / h, 4.0 / 3.0 * 1.03);
    flips += p.flip;
    // Deterministic per (seed, epoch, index).
    CropPlan q = PlanCrop(400, 300, t, 7, 0, i);
    EXPECT_EQ(p.x0, q.x0);
    EXPECT_EQ(p.flip, q.flip);
  }
  EXPECT_GT(flips, 800);
  EXPECT_LT(flips, 1200);
  // Another epoch, another crop.
  EXPECT_NE(PlanCrop(400, 300, t, 7, 1, 5).x0 + PlanCrop(400, 300, t, 7, 1, 5).y1,
            PlanCrop(400, 300, t, 7, 0, 5).x0 + PlanCrop(400, 300, t, 7, 0, 5).y1);
  // A very wide image makes every try fail: the fallback is the centre crop at ratio 4/3.
  CropPlan wide = PlanCrop(1000, 10, t, 7, 0, 0);
  EXPECT_EQ(wide.y0, 0);
  EXPECT_EQ(wide.y1, 10);
  EXPECT_EQ(wide.x1 - wide.x0, 13);
  EXPECT_EQ(wide.x0, (1000 - 13) / 2);
}

TEST_F(ImageFolderTest, EvalCropIsTheCentreOfTheResizedImage) {
  TransformOptions t = EvalTransform(224, 224, 3, kImageNetMean, kImageNetStd);
  CropPlan p = PlanCrop(256, 256, t, 0, 0, 0);  // Resize(256) is the identity
  EXPECT_DOUBLE_EQ(p.x0, 16);
  EXPECT_DOUBLE_EQ(p.x1, 240);
  EXPECT_DOUBLE_EQ(p.y0, 16);
  EXPECT_FALSE(p.flip);
  p = PlanCrop(512, 1024, t, 0, 0, 0);  // Resize(256) -> 256 x 512, crop 224 in the middle
  EXPECT_DOUBLE_EQ(p.x0, 32);
  EXPECT_DOUBLE_EQ(p.x1, 480);
  EXPECT_DOUBLE_EQ(p.y0, 144 * 2);
  EXPECT_DOUBLE_EQ(p.y1, 368 * 2);
}

TEST_F(ImageFolderTest, SamplesHaveTheShapeAndNormalisation) {
  auto f = ScanImageFolder(Folder());
  ASSERT_TRUE(f.ok());
  for (int channels : {1, 3}) {
    TransformOptions t = TrainTransform(20, 24, channels, std::vector<float>(channels, 0.5f),
                                        std::vector<float>(channels, 0.25f));
    const size_t n = static_cast<size_t>(channels) * 20 * 24;
    for (int64_t i = 0; i < f->size(); ++i) {
      std::vector<float> x(n), x2(n);
      std::vector<uint8_t> u(n);
      ASSERT_TRUE(LoadSample(*f, i, 3, 11, t, {}, x.data(), nullptr).ok());
      ASSERT_TRUE(LoadSample(*f, i, 3, 11, t, {}, x2.data(), nullptr).ok());
      ASSERT_TRUE(LoadSample(*f, i, 3, 11, t, {}, nullptr, u.data()).ok());
      EXPECT_EQ(x, x2);
      for (size_t k = 0; k < n; ++k) {
        ASSERT_NEAR(x[k], (u[k] / 255.0 - 0.5) / 0.25, 0.5 / 255 / 0.25 + 1e-4);
      }
    }
  }
  // An image resampled to its own size with the eval crop fraction 1 is itself.
  TransformOptions id = EvalTransform(28, 28, 1, {}, {});
  id.eval_crop_fraction = 1.0;
  for (int64_t i = 0; i < f->size(); ++i) {
    if (f->files[i].find("/g0.png") == std::string::npos) continue;
    std::vector<uint8_t> u(28 * 28);
    ASSERT_TRUE(LoadSample(*f, i, 0, 0, id, {}, nullptr, u.data()).ok());
    EXPECT_EQ(u, originals_->at(f->files[i]).pixels);
  }
}

TEST_F(ImageFolderTest, BalancedSplitTakesTheSameNumberFromEveryClass) {
  auto f = ScanImageFolder(Folder());
  ASSERT_TRUE(f.ok());
  auto s = SplitImageFolder(*f, 23, 5);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->source, "balanced");
  EXPECT_EQ(s->valid.size(), 23u);
  EXPECT_EQ(s->train.size(), 10u * kPerClass - 23);
  std::vector<int> per(10);
  for (int64_t i : s->valid) ++per[f->labels[i]];
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per[c], c < 3 ? 3 : 2);
  std::set<int64_t> all(s->train.begin(), s->train.end());
  all.insert(s->valid.begin(), s->valid.end());
  EXPECT_EQ(all.size(), 10u * kPerClass);
  auto again = SplitImageFolder(*f, 23, 5);
  EXPECT_EQ(again->valid, s->valid);
  auto other = SplitImageFolder(*f, 23, 6);
  EXPECT_NE(other->valid, s->valid);
  EXPECT_TRUE(IsError(SplitImageFolder(*f, 10 * kPerClass, 5).status(),
                      absl::StatusCode::kInvalidArgument, {"valid_size"}));
}

TEST_F(ImageFolderTest, SplitListsAreReadAndCheckedLineByLine) {
  const std::string dir = *root_ + "/lists";
  fs::create_directories(dir + "/a");
  fs::create_directories(dir + "/b");
  for (const char* p : {"a/1.png", "a/2.png", "a/3.png", "b/1.png", "b/2.png"}) {
    fs::copy_file(Folder() + "/Bag/g0.png", dir + "/" + p);
  }
  auto f = ScanImageFolder(dir);
  ASSERT_TRUE(f.ok()) << f.status();
  WriteFile(dir + "/train.txt", "a/1.png\r\nb/2.png\n\na/3.png\n");
  auto s = SplitImageFolder(*f, 1, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->source, "lists");
  EXPECT_EQ(s->train, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(s->valid, (std::vector<int64_t>{1, 3}));  // val.txt absent: the rest
  WriteFile(dir + "/val.txt", "");                    // an empty list: nothing held out
  s = SplitImageFolder(*f, 1, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->valid.empty());
  EXPECT_EQ(s->unlisted, 2);
  WriteFile(dir + "/val.txt", "b/1.png\n");
  s = SplitImageFolder(*f, 1, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->valid, (std::vector<int64_t>{3}));
  EXPECT_EQ(s->unlisted, 1);
  const std::string val = dir + "/val.txt";
  WriteFile(val, "b/1.png\nb/9.png\n");
  EXPECT_TRUE(IsError(SplitImageFolder(*f, 1, 0).status(), absl::StatusCode::kInvalidArgument,
                      {val + ":2", "b/9.png", "not a file"}));
  WriteFile(val, "../lists/a/1.png\n");
  EXPECT_TRUE(IsError(SplitImageFolder(*f, 1, 0).status(), absl::StatusCode::kInvalidArgument,
                      {val + ":1", "leaves the folder"}));
  WriteFile(val, "a/1.png\n");
  EXPECT_TRUE(IsError(SplitImageFolder(*f, 1, 0).status(), absl::StatusCode::kInvalidArgument,
                      {val + ":1", "listed twice"}));
  WriteFile(val, "/etc/passwd\n");
  EXPECT_TRUE(IsError(SplitImageFolder(*f, 1, 0).status(), absl::StatusCode::kInvalidArgument,
                      {"absolute"}));
  WriteFile(val, std::string(2000, 'x') + "\n");
  EXPECT_TRUE(IsError(SplitImageFolder(*f, 1, 0).status(), absl::StatusCode::kInvalidArgument,
                      {val + ":1", "limit of 1024"}));
}

TEST_F(ImageFolderTest, ScanBoundsNameTheLimit) {
  ImageFolderLimits l;
  l.max_files = 50;
  EXPECT_TRUE(IsError(ScanImageFolder(Folder(), l).status(), absl::StatusCode::kInvalidArgument,
                      {Folder(), "limit of 50 files"}));
  l = {};
  l.max_path_bytes = 12;
  EXPECT_TRUE(IsError(ScanImageFolder(Folder(), l).status(), absl::StatusCode::kInvalidArgument,
                      {"limit of 12"}));
  l = {};
  l.max_depth = 2;
  EXPECT_TRUE(IsError(ScanImageFolder(Folder(), l).status(), absl::StatusCode::kInvalidArgument,
                      {"nested", "limit of 2"}));
  l = {};
  l.max_classes = 3;
  EXPECT_TRUE(IsError(ScanImageFolder(Folder(), l).status(), absl::StatusCode::kInvalidArgument,
                      {"limit of 3 class folders"}));
  EXPECT_TRUE(IsError(ScanImageFolder(*root_ + "/missing").status(), absl::StatusCode::kNotFound,
                      {"missing", "not a folder"}));
  fs::create_directories(*root_ + "/empty/a");
  EXPECT_TRUE(IsError(ScanImageFolder(*root_ + "/empty").status(),
                      absl::StatusCode::kInvalidArgument, {"no files"}));
}

// A smooth RGB image (gradients: JPEG at quality 100 keeps it within a few levels).
Image SmoothRgb(int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.pixels.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.pixels[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(40 + 200 * x / (w - 1));
      p[1] = static_cast<uint8_t>(230 - 180 * y / (h - 1));
      p[2] = static_cast<uint8_t>(60 + 80 * (x + y) / (w + h - 2));
    }
  }
  return img;
}

// RGB to CMYK as Adobe stores it (inverted, 255 = no ink): k = max(R, G, B) and c = R * 255 / k,
// so that c * k / 255 gives R back (within rounding).
std::vector<uint8_t> InvertedCmyk(const Image& rgb) {
  const size_t n = static_cast<size_t>(rgb.width) * rgb.height;
  std::vector<uint8_t> cmyk(n * 4);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &rgb.pixels[3 * i];
    const int k = std::max({p[0], p[1], p[2]});
    for (int c = 0; c < 3; ++c) {
      cmyk[4 * i + c] = static_cast<uint8_t>(k == 0 ? 255 : (p[c] * 255 + k / 2) / k);
    }
    cmyk[4 * i + 3] = static_cast<uint8_t>(k);
  }
  return cmyk;
}

// TurboJPEG 2.1 writes CMYK pixels as a YCCK JPEG (Adobe marker, transform 2).
std::string CompressYcck(const std::vector<uint8_t>& cmyk, int w, int h, int subsamp) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  std::string out;
  if (tjCompress2(tj, cmyk.data(), w, 0, h, TJPF_CMYK, &buf, &size, subsamp, 100, 0) == 0) {
    out.assign(reinterpret_cast<char*>(buf), size);
  }
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

// libjpeg itself for a plain CMYK JPEG (Adobe marker, transform 0), which TurboJPEG 2.1 cannot
// write.
std::string CompressCmyk(const std::vector<uint8_t>& cmyk, int w, int h) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = w;
  cinfo.image_height = h;
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_colorspace(&cinfo, JCS_CMYK);
  jpeg_set_quality(&cinfo, 100, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&cmyk[static_cast<size_t>(cinfo.next_scanline) * w * 4]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::string out(reinterpret_cast<char*>(buf), size);
  std::free(buf);
  return out;
}

int JpegColorspace(const std::string& jpeg) {
  tjhandle tj = tjInitDecompress();
  int w = 0, h = 0, subsamp = 0, cs = -1;
  tjDecompressHeader3(tj, reinterpret_cast<const unsigned char*>(jpeg.data()), jpeg.size(), &w, &h,
                      &subsamp, &cs);
  tjDestroy(tj);
  return cs;
}

// Largest and mean absolute difference.
std::pair<int, double> Diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int most = 0;
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const int d = std::abs(a[i] - b[i]);
    most = std::max(most, d);
    sum += d;
  }
  return {most, sum / a.size()};
}

TEST_F(ImageFolderTest, CmykAndYcckJpegsDecodeToTheRgbTheyWereMadeFrom) {
  const Image rgb = SmoothRgb(64, 48);
  std::vector<uint8_t> luma(64 * 48);
  for (size_t i = 0; i < luma.size(); ++i) {
    const uint8_t* p = &rgb.pixels[3 * i];
    luma[i] = static_cast<uint8_t>(std::lround(0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
  }
  const std::vector<uint8_t> cmyk = InvertedCmyk(rgb);
  struct Case {
    std::string name;
    std::string bytes;
    int colorspace;
  };
  const std::vector<Case> cases = {
      {"cmyk.jpg", CompressCmyk(cmyk, 64, 48), TJCS_CMYK},
      {"ycck444.jpg", CompressYcck(cmyk, 64, 48, TJSAMP_444), TJCS_YCCK},
      {"ycck420.jpg", CompressYcck(cmyk, 64, 48, TJSAMP_420), TJCS_YCCK},
  };
  ImageLimits limits;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_FALSE(c.bytes.empty());
    ASSERT_EQ(JpegColorspace(c.bytes), c.colorspace);
    auto info = ProbeImage(c.bytes, c.name, limits);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->format, ImageFormat::kJpeg);
    EXPECT_EQ(info->width, 64);
    EXPECT_EQ(info->height, 48);
    EXPECT_EQ(info->channels, 3);

    auto img = DecodeImage(c.bytes, c.name, 3, limits);
    ASSERT_TRUE(img.ok()) << img.status();
    ASSERT_EQ(img->channels, 3);
    ASSERT_EQ(img->pixels.size(), rgb.pixels.size());
    auto [most, mean] = Diff(img->pixels, rgb.pixels);  // measured: at most 3, mean 0.05-0.4
    EXPECT_LT(mean, 1.0);
    EXPECT_LE(most, 8);

    auto grey = DecodeImage(c.bytes, c.name, 1, limits);
    ASSERT_TRUE(grey.ok()) << grey.status();
    ASSERT_EQ(grey->channels, 1);
    ASSERT_EQ(grey->pixels.size(), luma.size());
    std::tie(most, mean) = Diff(grey->pixels, luma);
    EXPECT_LT(mean, 1.0);
    EXPECT_LE(most, 8);

    // Scaled decoding: the RGB path's scale, about the box average of the original.
    int sw = 0, sh = 0;
    JpegScaledSize(64, 48, 32, 24, &sw, &sh);
    auto small = DecodeImage(c.bytes, c.name, 3, limits, 32, 24);
    ASSERT_TRUE(small.ok()) << small.status();
    ASSERT_EQ(small->width, sw);
    ASSERT_EQ(small->height, sh);
    ASSERT_EQ(sw, 32);
    double diff = 0;
    for (int y = 0; y < 24; ++y) {
      for (int x = 0; x < 32; ++x) {
        for (int ch = 0; ch < 3; ++ch) {
          double s = 0;
          for (int d = 0; d < 4; ++d) {
            s += rgb.pixels[((y * 2 + d / 2) * 64 + x * 2 + d % 2) * 3 + ch];
          }
          diff += std::abs(s / 4 - small->pixels[(y * 32 + x) * 3 + ch]);
        }
      }
    }
    EXPECT_LT(diff / (24 * 32 * 3), 1.5);  // measured 0.3-0.4

    // The pixel bound applies before the 4-byte-a-pixel CMYK buffer is allocated.
    ImageLimits tight;
    tight.max_pixels = 64 * 48 - 1;
    EXPECT_TRUE(IsError(DecodeImage(c.bytes, c.name, 3, tight).status(),
                        absl::StatusCode::kInvalidArgument, {c.name, "limit of 3071 pixels"}));
  }

  // Through the folder and the transforms, as ImageNet's CMYK files are read.
  const std::string dir = *root_ + "/cmyk";
  WriteFile(dir + "/a/cmyk.jpg", cases[0].bytes);
  WriteFile(dir + "/b/ycck.jpg", cases[2].bytes);
  auto f = ScanImageFolder(dir);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->size(), 2);
  TransformOptions t = EvalTransform(32, 32, 3, kImageNetMean, kImageNetStd);
  std::vector<float> x(3 * 32 * 32);
  for (int64_t i = 0; i < f->size(); ++i) {
    EXPECT_TRUE(LoadSample(*f, i, 0, 0, t, {}, x.data(), nullptr).ok()) << f->files[i];
  }
}

TEST_F(ImageFolderTest, TruncatedCmykJpegIsAnErrorNamingTheFile) {
  const Image rgb = SmoothRgb(64, 48);
  const std::vector<uint8_t> cmyk = InvertedCmyk(rgb);
  for (const std::string& whole :
       {CompressCmyk(cmyk, 64, 48), CompressYcck(cmyk, 64, 48, TJSAMP_420)}) {
    for (size_t keep : {whole.size() * 6 / 10, whole.size() - 2, size_t{200}}) {
      const std::string cut = whole.substr(0, keep);
      for (int channels : {1, 3}) {
        EXPECT_TRUE(IsError(DecodeImage(cut, "cut_cmyk.jpg", channels, {}).status(),
                            absl::StatusCode::kDataLoss, {"cut_cmyk.jpg", "JPEG"}))
            << keep << " of " << whole.size() << " bytes";
      }
    }
  }
}

// The hostile files, each with the words its error must carry.
struct BadFile {
  std::string name;
  std::string bytes;
  std::vector<std::string> words;
};

std::vector<BadFile> HostileFiles(const std::string& good_jpeg, const std::string& good_png) {
  std::vector<BadFile> bad;
  bad.push_back(
      {"truncated.jpg", good_jpeg.substr(0, good_jpeg.size() * 6 / 10), {"truncated.jpg", "JPEG"}});
  bad.push_back({"garbage.jpg", std::string(3000, '\x5a'), {"garbage.jpg", "not a JPEG or PNG"}});
  bad.push_back({"empty.jpg", "", {"empty.jpg", "0 bytes"}});
  std::string huge = good_jpeg;
  for (size_t i = 0; i + 9 < huge.size(); ++i) {  // SOF0: FF C0 len(2) precision h(2) w(2)
    if (static_cast<uint8_t>(huge[i]) == 0xFF && static_cast<uint8_t>(huge[i + 1]) == 0xC0) {
      huge[i + 5] = huge[i + 7] = '\xEA';
      huge[i + 6] = huge[i + 8] = '\x60';  // 60000 x 60000
      break;
    }
  }
  bad.push_back({"huge.jpg", huge, {"huge.jpg", "60000x60000", "limit of 89478485 pixels"}});
  std::string crc = good_png;
  size_t idat = crc.find("IDAT");
  uint32_t len = (uint8_t(crc[idat - 4]) << 24) | (uint8_t(crc[idat - 3]) << 16) |
                 (uint8_t(crc[idat - 2]) << 8) | uint8_t(crc[idat - 1]);
  crc[idat + 4 + len] ^= 0x55;
  bad.push_back({"badcrc.png", crc, {"badcrc.png", "CRC"}});
  bad.push_back({"cut.png", good_png.substr(0, good_png.size() / 2), {"cut.png", "PNG"}});
  return bad;
}

TEST_F(ImageFolderTest, HostileFilesAreNamedOrSkippedAndCounted) {
  const std::string dir = *root_ + "/hostile";
  const std::string jpeg = ReadTextFile(Folder() + "/Coat/c3.JPEG");
  const std::string png = ReadTextFile(Folder() + "/Coat/g0.png");
  std::vector<BadFile> bad = HostileFiles(jpeg, png);
  for (const BadFile& b : bad) WriteFile(dir + "/bad/" + b.name, b.bytes);
  WriteFile(dir + "/bad/good.jpg", jpeg);
  WriteFile(dir + "/good/1.png", png);
  const bool root = ::geteuid() == 0;
  if (!root) {
    WriteFile(dir + "/bad/noperm.png", png);
    ::chmod((dir + "/bad/noperm.png").c_str(), 0);
    bad.push_back({"noperm.png", "", {"noperm.png", "Permission denied"}});
  }
  auto f = ScanImageFolder(dir);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->size(), static_cast<int64_t>(bad.size()) + 2);
  TransformOptions t = TrainTransform(32, 32, 3, kImageNetMean, kImageNetStd);
  std::vector<float> x(3 * 32 * 32);
  int failures = 0;
  for (int64_t i = 0; i < f->size(); ++i) {
    absl::Status s = LoadSample(*f, i, 0, 0, t, {}, x.data(), nullptr);
    const std::string name = fs::path(f->files[i]).filename().string();
    if (name == "good.jpg" || name == "1.png") {
      EXPECT_TRUE(s.ok()) << s;
      continue;
    }
    ++failures;
    for (const BadFile& b : bad) {
      if (b.name != name) continue;
      EXPECT_FALSE(s.ok()) << name;
      for (const std::string& w : b.words) {
        EXPECT_NE(std::string(s.message()).find(w), std::string::npos) << s << " lacks " << w;
      }
    }
  }
  EXPECT_EQ(failures, static_cast<int>(bad.size()));

  std::vector<int64_t> all(f->size());
  std::iota(all.begin(), all.end(), 0);
  // What each file gives alone, in the batch's order: the first bad file's error, the bad
  // files' messages, the good files and their pixels.
  std::vector<int64_t> order = all;
  std::reverse(order.begin(), order.end());  // the good files are neither first nor last
  absl::Status first_bad;
  std::vector<std::string> messages;
  std::vector<int64_t> good_files;
  std::vector<float> good_pixels;
  for (int64_t i : order) {
    absl::Status s = LoadSample(*f, i, 1, 0, t, {}, x.data(), nullptr);
    if (s.ok()) {
      good_files.push_back(i);
      good_pixels.insert(good_pixels.end(), x.begin(), x.end());
    } else {
      if (first_bad.ok()) first_bad = s;
      messages.push_back(std::string(s.message()));
    }
  }
  ASSERT_EQ(good_files.size(), 2u);
  // Each batch's images are shared out among the threads: the result is the same for any count.
  for (int threads : {1, 2, 5}) {
    SCOPED_TRACE(absl::StrCat(threads, " threads"));
    // Without skip_bad_files: the batch is the first bad file's error.
    LoaderOptions o;
    o.transform = t;
    o.threads = threads;
    {
      ImageFolderLoader loader(*f, o, {BatchRequest{1, order}});
      auto b = loader.Next();
      EXPECT_EQ(b.status(), first_bad);
      EXPECT_NE(std::string(b.status().message()).find(dir + "/bad/"), std::string::npos);
    }
    // With it: the good files are delivered, each bad one named in the batch and counted.
    o.skip_bad_files = true;
    ImageFolderLoader loader(*f, o, {BatchRequest{1, order}, BatchRequest{1, order}});
    for (int e = 0; e < 2; ++e) {
      auto b = loader.Next();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(b->n, 2);
      EXPECT_EQ(b->indices, good_files);
      EXPECT_EQ(b->f32, good_pixels);
      EXPECT_EQ(b->skipped, messages);
      loader.Recycle(std::move(*b));
    }
    EXPECT_EQ(loader.bad_files(), 2 * static_cast<int64_t>(bad.size()));
    EXPECT_TRUE(absl::IsOutOfRange(loader.Next().status()));
  }
  // A tighter pixel bound refuses an ordinary image, naming the limit.
  ImageFolderLimits tight;
  tight.image.max_pixels = 100;
  absl::Status s = LoadSample(*f, 0, 0, 0, t, tight, x.data(), nullptr);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"limit of 100 pixels"})) << s;
  tight = {};
  tight.image.max_file_bytes = 10;
  int64_t good = std::find(f->files.begin(), f->files.end(), "bad/good.jpg") - f->files.begin();
  s = LoadSample(*f, good, 0, 0, t, tight, x.data(), nullptr);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"good.jpg", "limit of 10 bytes"}));
}

TEST_F(ImageFolderTest, LoaderDeliversInOrderTheSameBatchesForAnyThreadCount) {
  auto f = ScanImageFolder(Folder());
  ASSERT_TRUE(f.ok());
  std::vector<int64_t> all(f->size());
  std::iota(all.begin(), all.end(), 0);
  std::vector<BatchRequest> req = EpochBatches(all, 16, 3, 0);
  std::vector<BatchRequest> e1 = EpochBatches(all, 16, 3, 1);
  req.insert(req.end(), e1.begin(), e1.end());
  ASSERT_EQ(req.size(), 2u * (10 * kPerClass / 16));
  EXPECT_NE(req[0].indices, e1[0].indices);  // a new order each epoch
  std::vector<std::vector<float>> first;
  for (auto [threads, depth] : {std::pair{1, 1}, {2, 4}, {4, 2}, {3, 16}}) {
    LoaderOptions o;
    o.threads = threads;
    o.queue_depth = depth;
    o.seed = 9;
    o.transform = TrainTransform(40, 40, 3, kImageNetMean, kImageNetStd);
    ImageFolderLoader loader(*f, o, req);
    for (size_t b = 0; b < req.size(); ++b) {
      auto batch = loader.Next();
      ASSERT_TRUE(batch.ok()) << batch.status();
      ASSERT_EQ(batch->indices, req[b].indices);
      ASSERT_EQ(batch->n, 16);
      for (int k = 0; k < 16; ++k) EXPECT_EQ(batch->labels[k], f->labels[req[b].indices[k]]);
      if (first.size() <= b) {
        first.push_back(batch->f32);
      } else {
        EXPECT_EQ(batch->f32, first[b]) << "batch " << b << " with " << threads << " threads";
      }
      if (threads > 1) loader.Recycle(std::move(*batch));  // reused buffers change nothing
    }
    EXPECT_TRUE(absl::IsOutOfRange(loader.Next().status()));
    EXPECT_EQ(loader.bad_files(), 0);
  }
  // A loader dropped early stops its threads (mid-batch: more threads than a batch has images).
  {
    LoaderOptions o;
    o.threads = 20;
    ImageFolderLoader loader(*f, o, req);
    ASSERT_TRUE(loader.Next().ok());
  }
  // A batch of no images is an empty batch, between others.
  {
    LoaderOptions o;
    o.threads = 3;
    o.transform = TrainTransform(40, 40, 3, kImageNetMean, kImageNetStd);
    ImageFolderLoader loader(*f, o, {req[0], BatchRequest{0, {}}, req[1]});
    for (int64_t n : {16, 0, 16}) {
      auto batch = loader.Next();
      ASSERT_TRUE(batch.ok()) << batch.status();
      EXPECT_EQ(batch->n, n);
      EXPECT_EQ(batch->f32.size(), static_cast<size_t>(n) * 3 * 40 * 40);
    }
  }
}

// Loaders given one pool reuse each other's buffers (a restart does not fault in new memory),
// and a reused buffer changes no pixel.
TEST_F(ImageFolderTest, LoadersSharingAPoolReuseItsBuffers) {
  auto f = ScanImageFolder(Folder());
  ASSERT_TRUE(f.ok());
  std::vector<int64_t> all(f->size());
  std::iota(all.begin(), all.end(), 0);
  const std::vector<BatchRequest> req = EpochBatches(all, 16, 3, 0);
  LoaderOptions o;
  o.threads = 1;  // one thread: the first batch is the first to take a buffer from the pool
  o.transform = TrainTransform(40, 40, 3, kImageNetMean, kImageNetStd);
  std::vector<float> fresh;
  {
    ImageFolderLoader alone(*f, o, {req[1]});
    auto b = alone.Next();
    ASSERT_TRUE(b.ok()) << b.status();
    fresh = b->f32;
  }
  o.buffers = std::make_shared<BatchBufferPool>(1);
  const float* reused;
  {
    ImageFolderLoader first(*f, o, {req[0]});
    auto b = first.Next();
    ASSERT_TRUE(b.ok()) << b.status();
    reused = b->f32.data();
    first.Recycle(std::move(*b));
    EXPECT_EQ(o.buffers->size(), 1u);
  }
  EXPECT_EQ(o.buffers->size(), 1u);
  ImageFolderLoader second(*f, o, {req[1]});
  auto b = second.Next();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->f32.data(), reused);
  EXPECT_EQ(b->f32, fresh);
  EXPECT_EQ(o.buffers->size(), 0u);
  second.Recycle(std::move(*b));
  {  // an empty batch takes no buffer from the pool
    ImageFolderLoader empty(*f, o, {BatchRequest{0, {}}});
    ASSERT_TRUE(empty.Next().ok());
    EXPECT_EQ(o.buffers->size(), 1u);
  }
  // A dropped loader hands back what it had decoded ahead, within its queue's bound.
  o.buffers = std::make_shared<BatchBufferPool>(8);
  {
    ImageFolderLoader ahead(*f, o, req);
    ASSERT_TRUE(ahead.Next().ok());
  }
  EXPECT_LE(o.buffers->size(), static_cast<size_t>(o.queue_depth));
}

TEST(BalancedDrawTest, SplitAndSubsetAreClassBalancedAndLabelsAreChecked) {
  const std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
  auto split = BalancedValidationSplit(labels, 3, 4, 7);
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_EQ(split->valid.size(), 4u);
  EXPECT_EQ(split->train.size(), 8u);
  std::vector<int> per_class(3, 0);
  for (int64_t i : split->valid) ++per_class[labels[i]];
  EXPECT_EQ(per_class, (std::vector<int>{2, 1, 1}));  // the first valid_size % 3 classes one more
  std::vector<int64_t> subset = BalancedSubsetIndices(labels, 3, 6, 7);
  ASSERT_EQ(subset.size(), 6u);
  EXPECT_TRUE(std::is_sorted(subset.begin(), subset.end()));
  per_class.assign(3, 0);
  for (int64_t i : subset) ++per_class[labels[i]];
  EXPECT_EQ(per_class, (std::vector<int>{2, 2, 2}));
  EXPECT_EQ(BalancedSubsetIndices(labels, 3, 100, 7).size(), labels.size());
  EXPECT_TRUE(IsError(BalancedValidationSplit({0, 1, 3, 1}, 3, 2, 7).status(),
                      absl::StatusCode::kInvalidArgument, {"labels[2]: 3", "0..2"}));
  EXPECT_TRUE(IsError(BalancedValidationSplit({0, -1, 2, 1}, 3, 2, 7).status(),
                      absl::StatusCode::kInvalidArgument, {"labels[1]: -1"}));
}

TEST_F(ImageFolderTest, InvalidLoaderOptionsAreAnErrorFromNext) {
  auto f = ScanImageFolder(Folder());
  ASSERT_TRUE(f.ok());
  LoaderOptions o;
  o.transform.channels = 2;
  EXPECT_TRUE(IsError(ImageFolderLoader(*f, o, {}).Next().status(),
                      absl::StatusCode::kInvalidArgument, {"channels"}));
  o = {};
  o.transform.mean = {0.5f};
  EXPECT_TRUE(IsError(ImageFolderLoader(*f, o, {}).Next().status(),
                      absl::StatusCode::kInvalidArgument, {"mean/std"}));
  o = {};
  o.queue_depth = 0;
  EXPECT_TRUE(IsError(ImageFolderLoader(*f, o, {}).Next().status(),
                      absl::StatusCode::kInvalidArgument, {"queue_depth"}));
  o = {};
  o.nice = 20;
  EXPECT_TRUE(IsError(ImageFolderLoader(*f, o, {}).Next().status(),
                      absl::StatusCode::kInvalidArgument, {"nice: 20", "0..19"}));
  o = {};
  EXPECT_TRUE(IsError(ImageFolderLoader(*f, o, {BatchRequest{0, {0, 100000}}}).Next().status(),
                      absl::StatusCode::kInvalidArgument, {"index 100000"}));
}

}  // namespace
}  // namespace nas

// onnx_reference: what tests/integration/onnx_test.sh compares the ONNX models against, computed
// the way the project computes it (LibTorch, not the exporter):
//
//   onnx_reference logits SPACE_JSON ARCH WEIGHTS N OUT_DIR
//     ARCH: a reference network config (network.json) or "largest" (the baseline). Loads WEIGHTS
//     into Network with LibTorch's own Module::load, takes the first N Fashion-MNIST test images,
//     normalises them as the search does (Normalize with the training set's mean and std), runs
//     Network::forward in eval mode and writes OUT_DIR/{pixels.u8, input.f32, logits.f32,
//     labels.i64, meta.json} (raw little-endian arrays, NCHW; meta.json: shapes, mean, std).
//   onnx_reference nan SPACE_JSON ARCH WEIGHTS OUT_PT
//     Writes a copy of WEIGHTS whose stem.conv.weight holds a NaN (a malformed weights file).
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/json_fields.h"
#include "core/network_config.h"
#include "core/search_space.h"
#include "worker/data.h"
#include "worker/ops.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: onnx_reference logits SPACE_JSON ARCH WEIGHTS N OUT_DIR\n"
               "       onnx_reference nan SPACE_JSON ARCH WEIGHTS OUT_PT\n");
  return 2;
}

void WriteRaw(const std::string& path, const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

int Run(int argc, char** argv) {
  if (argc < 6) return Usage();
  std::string mode = argv[1];
  auto space = nas::SearchSpace::Load(argv[2]);
  if (!space.ok()) {
    std::fprintf(stderr, "%s\n", std::string(space.status().message()).c_str());
    return 1;
  }
  std::string arch = argv[3];
  absl::StatusOr<nas::NetworkConfig> config;
  if (arch == "largest") {
    config = space->Derive(space->LargestChoices());
  } else {
    auto text = nas::ReadFile(arch);
    if (!text.ok()) {
      std::fprintf(stderr, "%s\n", std::string(text.status().message()).c_str());
      return 1;
    }
    config = nas::NetworkConfig::FromReferenceJson(*text, space->input_height(),
                                                   space->input_width());
  }
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  nas::Network net(*config);
  torch::serialize::InputArchive archive;
  archive.load_from(argv[4]);
  net->load(archive);
  net->eval();
  torch::NoGradGuard no_grad;

  if (mode == "nan") {
    net->stem->conv->weight.view(-1)[0] = std::nanf("");
    torch::serialize::OutputArchive out;
    net->save(out);
    out.save_to(argv[5]);
    return 0;
  }
  if (mode != "logits" || argc != 7) return Usage();
  int64_t n = std::stoll(argv[5]);
  std::string out = argv[6];
  auto train = nas::LoadDataSet("fashion-mnist", "", /*train=*/true);
  auto test = nas::LoadDataSet("fashion-mnist", "", /*train=*/false);
  if (!train.ok() || !test.ok()) {
    std::fprintf(stderr, "Fashion-MNIST: %s\n",
                 std::string((train.ok() ? test.status() : train.status()).message()).c_str());
    return 1;
  }
  torch::Tensor pixels = test->images.slice(0, 0, n);
  torch::Tensor labels = test->labels.slice(0, 0, n);
  torch::Tensor input = nas::Normalize(pixels, train->mean, train->std);
  torch::Tensor logits = net->forward(input);
  double accuracy = logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
  WriteRaw(out + "/pixels.u8", pixels);
  WriteRaw(out + "/input.f32", input.contiguous());
  WriteRaw(out + "/logits.f32", logits);
  WriteRaw(out + "/labels.i64", labels);
  nas::Json meta = {{"input_shape", input.sizes().vec()},
                    {"logits_shape", logits.sizes().vec()},
                    {"mean", train->mean},
                    {"std", train->std},
                    {"accuracy", accuracy}};
  std::ofstream(out + "/meta.json") << meta.dump(2) << "\n";
  std::printf("onnx_reference: %lld images, LibTorch accuracy %.3f\n", static_cast<long long>(n),
              accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "onnx_reference: %s\n", e.what_without_backtrace());
    return 1;
  }
}

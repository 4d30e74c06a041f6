// The `main` of a fuzz target built without libFuzzer (gcc, the normal build): runs
// LLVMFuzzerTestOneInput once over every file in the directories (and files) given on the
// command line - a target's corpus and its regression inputs - so that the test suite replays
// every input that once crashed. Names starting with '.' are skipped (.gitkeep).
//
//   fuzz_json fuzz/corpus/json fuzz/regressions/json
//
// Exits 0 after running every input (a crash ends the process, as under libFuzzer), 2 when an
// argument cannot be read.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return false;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  // A copy of exactly `size` bytes, so that a read past the end is one past the allocation.
  std::unique_ptr<uint8_t[]> input(new uint8_t[bytes.size() + (bytes.empty() ? 1 : 0)]);
  std::copy(bytes.begin(), bytes.end(), input.get());
  LLVMFuzzerTestOneInput(input.get(), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int inputs = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path arg(argv[i]);
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(arg, ec)) {
        if (e.is_regular_file() && e.path().filename().string()[0] != '.')
          files.push_back(e.path());
      }
      if (ec) {
        std::fprintf(stderr, "replay: cannot list %s: %s\n", argv[i], ec.message().c_str());
        return 2;
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        std::printf("replay: %s\n", f.c_str());
        std::fflush(stdout);
        if (!RunFile(f)) return 2;
        ++inputs;
      }
    } else {
      if (!RunFile(arg)) return 2;
      ++inputs;
    }
  }
  std::printf("replay: %d inputs, no crash\n", inputs);
  return 0;
}

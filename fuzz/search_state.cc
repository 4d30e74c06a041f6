// SearchDriver::RestoreState (core/search_driver.h): the search state a checkpoint holds,
// restored into the driver of a job over the fashion-mnist preset; a restored driver plans on.
#include "core/search_driver.h"
#include "core/search_space.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nas::SearchPlan* plan = [] {
    auto* p =
        new nas::SearchPlan(nas::SearchPlan::ForSpace(*nas::SearchSpace::Preset("fashion-mnist")));
    p->train_batches = 7;
    p->valid_batches = 3;
    std::vector<std::vector<double>> edge_ms;
    for (int c : p->candidates_per_edge) edge_ms.push_back(std::vector<double>(c, 0.1));
    p->latency = nas::LatencyModel(0.5, std::move(edge_ms));
    p->loss = nas::HardwareLossOptions{nas::HardwareLossOptions::Type::kAddLinear, 2.0};
    return p;
  }();
  absl::StatusOr<nas::SearchDriver> d = nas::SearchDriver::Create(*plan);
  nas::fuzz::Require(d.ok(), "the fuzz target's plan is valid");
  if (!d->RestoreState(nas::fuzz::Text(data, size)).ok()) return 0;
  (void)d->SaveState();
  (void)d->ExpectedLatency();
  (void)d->total_weight_steps();
  (void)d->phase_total_steps();
  return 0;
}

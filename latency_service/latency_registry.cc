#include "latency_service/latency_registry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

struct LatencyRegistry::DeviceState {
  LatencyTable table;
  uint64_t version = 0;
  LatencyPredictor predictor;
  DeviceSummary summary;
  // Measured answers by raw and by canonical key. Immutable after construction.
  absl::flat_hash_map<std::string, LayerLatency> measured;
  // Predicted answers by the key as queried.
  mutable absl::Mutex cache_mu;
  mutable absl::flat_hash_map<std::string, LayerLatency> cache ABSL_GUARDED_BY(cache_mu);
};

namespace {

LayerLatency Measured(const LatencyEntry& e) {
  return LayerLatency{e.mean_ms, std::sqrt(e.var), e.count, LatencySource::kMeasured, false};
}

// Pools two measurements of one layer: count-weighted mean, and the variance of the union.
LatencyEntry Pool(const LatencyEntry& a, const LatencyEntry& b) {
  const double n = static_cast<double>(a.count + b.count);
  const double mean = (a.count * a.mean_ms + b.count * b.mean_ms) / n;
  const double second =
      (a.count * (a.var + a.mean_ms * a.mean_ms) + b.count * (b.var + b.mean_ms * b.mean_ms)) / n;
  return LatencyEntry{a.count + b.count, mean, std::max(0.0, second - mean * mean)};
}

}  // namespace

LatencyRegistry::LatencyRegistry(LatencyRegistryOptions options) : options_(std::move(options)) {
  if (!options_.table_dir.empty()) store_ = std::make_unique<TableStore>(options_.table_dir);
}

LatencyRegistry::~LatencyRegistry() = default;

absl::StatusOr<std::shared_ptr<LatencyRegistry::DeviceState>> LatencyRegistry::MakeState(
    LatencyTable table, uint64_t version, std::optional<LatencyPredictor> predictor) const {
  auto s = std::make_shared<DeviceState>();
  if (!predictor.has_value()) {
    NAS_ASSIGN_OR_RETURN(predictor, LatencyPredictor::Fit(table, options_.predictor));
    predictor->set_table_version(version);
  }
  s->predictor = std::move(*predictor);
  s->version = version;
  for (const auto& [key, e] : table.entries()) {
    NAS_ASSIGN_OR_RETURN(LayerKey k, LayerKey::Parse(key));
    s->measured[key] = Measured(e);
    s->measured.emplace(k.ToString(), Measured(e));
  }
  const LatencyTableInfo& info = table.info();
  s->summary.name = info.device;
  s->summary.runtime = info.runtime;
  s->summary.batch_size = info.batch_size;
  s->summary.threads = info.threads;
  s->summary.entries = static_cast<int64_t>(table.size());
  s->summary.profiled_at = info.profiled_at;
  s->summary.method = info.method;
  s->summary.version = version;
  s->summary.predictor = s->predictor.report();
  s->summary.calibration = info.calibration;
  s->table = std::move(table);
  return s;
}

absl::StatusOr<std::unique_ptr<LatencyRegistry>> LatencyRegistry::Open(
    LatencyRegistryOptions options) {
  if (options.cache_capacity < 1) {
    return absl::InvalidArgumentError("cache_capacity: must be >= 1");
  }
  if (options.max_keys_per_query < 1) {
    return absl::InvalidArgumentError("max_keys_per_query: must be >= 1");
  }
  std::unique_ptr<LatencyRegistry> r(new LatencyRegistry(std::move(options)));
  absl::flat_hash_map<std::string, std::shared_ptr<const DeviceState>> devices;
  if (r->store_ != nullptr) {
    NAS_ASSIGN_OR_RETURN(std::vector<StoredTable> stored, r->store_->LoadAll());
    for (StoredTable& t : stored) {
      const std::string device = t.table.info().device;
      const bool refit = !t.predictor.has_value();
      NAS_ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> s,
                           r->MakeState(std::move(t.table), t.version, std::move(t.predictor)));
      if (refit) NAS_RETURN_IF_ERROR(r->store_->SavePredictor(s->predictor));
      devices[device] = std::move(s);
    }
  }
  for (size_t i = 0; i < r->options_.builtin_tables.size(); ++i) {
    const BuiltinTable& b = r->options_.builtin_tables[i];
    const std::string field = absl::StrCat("builtin_tables[", i, "]");
    NAS_RETURN_IF_ERROR(ValidateDeviceName(b.device, field + ".device"));
    if (devices.contains(b.device)) continue;
    absl::StatusOr<LatencyTable> table = LatencyTable::Load(b.path);
    if (!table.ok()) {
      return absl::Status(table.status().code(),
                          absl::StrCat(field, ".path: ", table.status().message()));
    }
    table->mutable_info().device = b.device;
    NAS_ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> s,
                         r->MakeState(std::move(*table), 1, std::nullopt));
    devices[b.device] = std::move(s);
  }
  {
    absl::MutexLock lock(&r->mu_);
    r->devices_ = std::move(devices);
    if (r->options_.metrics != nullptr) r->options_.metrics->SetDevices(r->devices_.size());
  }
  return r;
}

std::shared_ptr<const LatencyRegistry::DeviceState> LatencyRegistry::Find(
    absl::string_view device) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = devices_.find(device);
  return it == devices_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<const LatencyRegistry::DeviceState>> LatencyRegistry::FindOrError(
    absl::string_view device) const {
  // A name no table can have is refused before it is looked up or echoed.
  NAS_RETURN_IF_ERROR(ValidateDeviceName(device, "device"));
  std::shared_ptr<const DeviceState> s = Find(device);
  if (s != nullptr) return s;
  std::vector<std::string> known;
  for (const DeviceSummary& d : ListDevices()) known.push_back(d.name);
  return absl::NotFoundError(
      absl::StrCat("device: unknown device \"", device,
                   "\" (known: ", known.empty() ? "none" : absl::StrJoin(known, ", "), ")"));
}

absl::Status LatencyRegistry::Query(absl::string_view device,
                                    absl::Span<const absl::string_view> keys,
                                    std::vector<LayerLatency>* answers) const {
  const absl::Time start = absl::Now();
  absl::Status status;
  QueryCounts counts;
  if (keys.size() > options_.max_keys_per_query) {
    status = absl::ResourceExhaustedError(absl::StrCat("layer_keys: ", keys.size(),
                                                       " keys exceed the limit of ",
                                                       options_.max_keys_per_query, " per query"));
  } else {
    absl::StatusOr<std::shared_ptr<const DeviceState>> state = FindOrError(device);
    status = state.ok() ? QueryImpl(**state, keys, answers, &counts) : state.status();
  }
  if (options_.metrics != nullptr) {
    if (status.ok()) {
      options_.metrics->RecordQuery(std::string(device), counts, static_cast<int64_t>(keys.size()),
                                    absl::ToDoubleSeconds(absl::Now() - start));
    } else {
      options_.metrics->RecordError(status);
    }
  }
  return status;
}

absl::Status LatencyRegistry::QueryImpl(const DeviceState& state,
                                        absl::Span<const absl::string_view> keys,
                                        std::vector<LayerLatency>* answers,
                                        QueryCounts* counts) const {
  answers->resize(keys.size());
  std::vector<size_t> misses;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = state.measured.find(keys[i]);
    if (it != state.measured.end()) {
      (*answers)[i] = it->second;
    } else {
      misses.push_back(i);
    }
  }
  counts->measured = static_cast<int64_t>(keys.size() - misses.size());
  if (misses.empty()) return absl::OkStatus();

  std::vector<size_t> uncached;
  {
    absl::ReaderMutexLock lock(&state.cache_mu);
    for (size_t i : misses) {
      auto it = state.cache.find(keys[i]);
      if (it != state.cache.end()) {
        (*answers)[i] = it->second;
        ++counts->cache_hits;
      } else {
        uncached.push_back(i);
      }
    }
  }
  counts->predicted = counts->cache_hits;
  std::vector<std::pair<std::string, LayerLatency>> fresh;
  for (size_t i : uncached) {
    const std::string key(keys[i]);
    absl::StatusOr<LayerKey> parsed = LayerKey::Parse(key);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer_keys[", i, "]: ", parsed.status().message()));
    }
    auto it = state.measured.find(parsed->ToString());
    if (it != state.measured.end()) {  // a non-canonical spelling of a measured key
      (*answers)[i] = it->second;
      ++counts->measured;
      continue;
    }
    absl::StatusOr<PredictedLatency> p = state.predictor.Answer(*parsed);
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat("layer_keys[", i, "]: ", p.status().message()));
    }
    (*answers)[i] =
        LayerLatency{p->mean_ms, p->std_ms, 0, LatencySource::kPredicted, p->extrapolated};
    ++counts->predicted;
    fresh.emplace_back(key, (*answers)[i]);
  }
  if (!fresh.empty()) {
    absl::MutexLock lock(&state.cache_mu);
    if (state.cache.size() + fresh.size() > options_.cache_capacity) state.cache.clear();
    for (auto& [k, v] : fresh) state.cache.emplace(std::move(k), v);
  }
  return absl::OkStatus();
}

std::vector<DeviceSummary> LatencyRegistry::ListDevices() const {
  std::vector<DeviceSummary> out;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, s] : devices_) out.push_back(s->summary);
  }
  std::sort(out.begin(), out.end(),
            [](const DeviceSummary& a, const DeviceSummary& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<DeviceSummary> LatencyRegistry::Describe(absl::string_view device) const {
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<const DeviceState> s, FindOrError(device));
  return s->summary;
}

absl::StatusOr<LatencyTable> LatencyRegistry::GetTable(absl::string_view device) const {
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<const DeviceState> s, FindOrError(device));
  return s->table;
}

absl::StatusOr<std::string> LatencyRegistry::GetTableJson(absl::string_view device) const {
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<const DeviceState> s, FindOrError(device));
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(s->table.ToJson(), "table"));
  j["version"] = s->version;
  return j.dump(2);
}

absl::StatusOr<DeviceSummary> LatencyRegistry::PutTable(LatencyTable table, PutMode mode,
                                                        uint64_t if_version) {
  const std::string device = table.info().device;
  NAS_RETURN_IF_ERROR(ValidateDeviceName(device, "table.device"));
  if (table.size() == 0) {
    return absl::InvalidArgumentError("table.entries: a table needs at least one entry");
  }
  absl::MutexLock put_lock(&put_mu_);
  std::shared_ptr<const DeviceState> old = Find(device);
  const uint64_t old_version = old == nullptr ? 0 : old->version;
  if (if_version != 0 && if_version != old_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "if_version: device ", device, " is at version ", old_version, ", not ", if_version));
  }
  if (mode == PutMode::kMerge && old != nullptr) {
    const LatencyTableInfo& a = old->table.info();
    const LatencyTableInfo& b = table.info();
    auto differs = [&](const std::string& field, const std::string& stored,
                       const std::string& uploaded) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table.", field, ": \"", uploaded, "\" differs from the stored table's \"", stored,
          "\"; timings from different set-ups do not merge (upload with merge=false to replace)"));
    };
    if (a.runtime != b.runtime) return differs("runtime", a.runtime, b.runtime);
    if (a.batch_size != b.batch_size) {
      return differs("batch_size", absl::StrCat(a.batch_size), absl::StrCat(b.batch_size));
    }
    if (a.threads != b.threads) {
      return differs("threads", absl::StrCat(a.threads), absl::StrCat(b.threads));
    }
    LatencyTable merged(b);
    // The upload's calibration (fitted on this run's networks) replaces the stored one; an
    // upload without one keeps the stored one.
    if (!merged.info().calibration.has_value()) merged.mutable_info().calibration = a.calibration;
    for (const auto& [key, e] : old->table.entries()) NAS_RETURN_IF_ERROR(merged.Insert(key, e));
    for (const auto& [key, e] : table.entries()) {
      absl::StatusOr<LatencyEntry> prev = old->table.Lookup(key);
      NAS_RETURN_IF_ERROR(merged.Insert(key, prev.ok() ? Pool(*prev, e) : e));
    }
    table = std::move(merged);
  }
  const uint64_t version = old_version + 1;
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> next,
                       MakeState(std::move(table), version, std::nullopt));
  if (store_ != nullptr) {
    NAS_RETURN_IF_ERROR(store_->SaveTable(next->table, version));
    NAS_RETURN_IF_ERROR(store_->SavePredictor(next->predictor));
  }
  DeviceSummary summary = next->summary;
  {
    absl::MutexLock lock(&mu_);
    devices_[device] = std::move(next);
    if (options_.metrics != nullptr) options_.metrics->SetDevices(devices_.size());
  }
  if (options_.metrics != nullptr) options_.metrics->RecordPut(device);
  return summary;
}

}  // namespace nas

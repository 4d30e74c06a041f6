// The embedded default: one machine runs the whole service as local processes on loopback - a
// latency service (holding this machine's profiled table), a coordinator (RocksDB in the result
// directory) and N search workers - then submits the search as a job, shows its progress and
// writes the result directory from the job's result. No LibTorch here: the caller profiles.
//
//   LaunchOptions o;  o.table_path = "~/.cache/nas/fashion-mnist-local-cpu-b1-t2.json";
//   o.spec.set_device("local-cpu");  o.workers = 2;  o.out_dir = "results/search";
//   NAS_ASSIGN_OR_RETURN(std::string report_md, RunLocalService(o));
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/search_client.h"
#include "nas/search.pb.h"

namespace nas {

struct LaunchOptions {
  // The job to run (device must name the table's device).
  JobSpec spec;
  // The latency table uploaded to the local latency service. Required.
  std::string table_path;
  // Result directory; the coordinator's RocksDB lives in <out_dir>/coordinator-db and the
  // processes' logs in <out_dir>/logs. Default "results/search".
  std::string out_dir = "results/search";
  // Local worker processes and intra-op threads each (0: cores / workers). Defaults 1, 0.
  int workers = 1;
  int threads_per_worker = 0;
  // Each worker's image-loader threads (--loader_threads). Default 2.
  int loader_threads = 2;
  // Directory holding coordinator/, worker/ and latency_service/ binaries; empty: found from
  // this executable's location in the build tree. Default "".
  std::string bin_dir;
  // Lease duration of the coordinator. Default 60 s.
  int lease_ms = 60000;
  // The coordinator fsyncs every round's checkpoint (coordinator --sync). Without it a round
  // survives a coordinator crash (kill -9) but not a machine crash. Default true.
  bool sync = true;
  // coordinator --pipelined_commits: a round is written while the next one runs. Default false.
  bool pipelined_commits = false;
  // Progress bar on stderr. Default true.
  bool progress = true;
};

absl::StatusOr<std::string> RunLocalService(const LaunchOptions& options);

// Follows a job on a coordinator with a progress bar until it ends, then writes its result
// directory. Returns report.md.
absl::StatusOr<std::string> FollowJob(const std::string& coordinator,
                                      const SearchClientOptions& client_options,
                                      const std::string& job_id,
                                      const std::string& out_dir, bool progress);

}  // namespace nas

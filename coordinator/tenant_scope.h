// The users' operations with the tenant rules applied (SearchHandler over the JobManager): a
// caller sees, watches, cancels, deletes and reads the results of its own tenant's jobs only;
// another tenant's job is NOT_FOUND with the message an unknown job gets, so its existence does
// not leak; a job's tenant and owner are the caller's, whatever the spec says; role admin sees
// and does everything. Without identities (no tokens file) every caller is an admin and a
// spec's tenant is kept as sent.
//
//   TenantScope scope(jobs.get(), /*identities=*/true);
//   NAS_ASSIGN_OR_RETURN(std::string id, scope.Submit(caller, spec));
//
// Thread-safety: as the JobManager (every method may be called concurrently).
#pragma once

#include "coordinator/handlers.h"
#include "coordinator/job_manager.h"

namespace nas {

class TenantScope final : public SearchHandler {
 public:
  // `jobs` is not owned. `identities`: callers come from a tokens file (their tenant is theirs);
  // false: no authentication.
  TenantScope(JobManager* jobs, bool identities) : jobs_(jobs), identities_(identities) {}

  absl::StatusOr<std::string> Submit(const Identity& caller, JobSpec spec) override;
  absl::StatusOr<JobStatus> Get(const Identity& caller, const std::string& job_id) override;
  absl::StatusOr<std::vector<JobStatus>> List(const Identity& caller,
                                              const std::string& tenant) override;
  absl::StatusOr<JobStatus> WaitForChange(const Identity& caller, const std::string& job_id,
                                          const JobStatus& last, absl::Duration timeout) override;
  absl::Status Cancel(const Identity& caller, const std::string& job_id) override;
  absl::Status Delete(const Identity& caller, const std::string& job_id) override;
  absl::StatusOr<JobResult> Result(const Identity& caller, const std::string& job_id) override;
  absl::StatusOr<std::string> Artifact(const Identity& caller, const std::string& job_id,
                                       const std::string& name) override;
  absl::StatusOr<GetQueueReply> Queue(const Identity& caller, const std::string& tenant) override;

 private:
  // OK when the caller may see the job.
  absl::Status Visible(const Identity& caller, const std::string& job_id) const;

  JobManager* jobs_;
  const bool identities_;
};

}  // namespace nas

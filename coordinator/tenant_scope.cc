#include "coordinator/tenant_scope.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace nas {

absl::Status TenantScope::Visible(const Identity& caller, const std::string& job_id) const {
  if (caller.role == Role::kAdmin) return absl::OkStatus();
  NAS_ASSIGN_OR_RETURN(JobStatus st, jobs_->Get(job_id));
  if (st.tenant() != caller.tenant) {
    return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TenantScope::Submit(const Identity& caller, JobSpec spec) {
  if (identities_) {  // the job is the caller's, whatever the request says
    spec.set_tenant(caller.tenant);
    spec.set_owner(caller.user);
  }
  return jobs_->Submit(spec);
}

absl::StatusOr<JobStatus> TenantScope::Get(const Identity& caller, const std::string& job_id) {
  NAS_RETURN_IF_ERROR(Visible(caller, job_id));
  return jobs_->Get(job_id);
}

absl::StatusOr<std::vector<JobStatus>> TenantScope::List(const Identity& caller,
                                                         const std::string& tenant) {
  std::string t = tenant;
  if (caller.role != Role::kAdmin) {
    if (!t.empty() && t != caller.tenant) return std::vector<JobStatus>();  // none visible
    t = caller.tenant;
  }
  return jobs_->List(t);
}

absl::StatusOr<JobStatus> TenantScope::WaitForChange(const Identity& caller,
                                                     const std::string& job_id,
                                                     const JobStatus& last,
                                                     absl::Duration timeout) {
  NAS_RETURN_IF_ERROR(Visible(caller, job_id));
  return jobs_->WaitForChange(job_id, last, timeout);
}

absl::Status TenantScope::Cancel(const Identity& caller, const std::string& job_id) {
  NAS_RETURN_IF_ERROR(Visible(caller, job_id));
  return jobs_->Cancel(job_id);
}

absl::Status TenantScope::Delete(const Identity& caller, const std::string& job_id) {
  NAS_RETURN_IF_ERROR(Visible(caller, job_id));
  return jobs_->Delete(job_id);
}

absl::StatusOr<JobResult> TenantScope::Result(const Identity& caller, const std::string& job_id) {
  NAS_RETURN_IF_ERROR(Visible(caller, job_id));
  return jobs_->Result(job_id);
}

absl::StatusOr<std::string> TenantScope::Artifact(const Identity& caller,
                                                  const std::string& job_id,
                                                  const std::string& name) {
  NAS_RETURN_IF_ERROR(Visible(caller, job_id));
  return jobs_->Artifact(job_id, name);
}

absl::StatusOr<GetQueueReply> TenantScope::Queue(const Identity& caller,
                                                 const std::string& tenant) {
  if (caller.role == Role::kAdmin) return jobs_->Queue(tenant);
  // A user sees its own tenant's queue; another's is as empty as an unknown one.
  GetQueueReply reply = jobs_->Queue(caller.tenant);
  if (!tenant.empty() && tenant != caller.tenant) reply.clear_tenants();
  return reply;
}

}  // namespace nas

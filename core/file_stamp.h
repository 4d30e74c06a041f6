// What a file is now (modification time, size, inode), so that a config file reloaded when it
// changes is read again only when it did: a Kubernetes Secret or ConfigMap replaced in place
// gets a new inode, an edit a new time or size.
//
//   NAS_ASSIGN_OR_RETURN(FileStamp now, StampOf(path, "tokens_file"));
//   if (now == loaded_stamp) return absl::OkStatus();  // unchanged
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace nas {

struct FileStamp {
  int64_t mtime_ns = 0, size = -1;
  uint64_t inode = 0;
  bool operator==(const FileStamp& o) const {
    return mtime_ns == o.mtime_ns && size == o.size && inode == o.inode;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

// NotFound "<field>: <path>: <OS reason>" when the file cannot be looked at.
absl::StatusOr<FileStamp> StampOf(const std::string& path, const std::string& field);

}  // namespace nas

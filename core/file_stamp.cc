#include "core/file_stamp.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace nas {

absl::StatusOr<FileStamp> StampOf(const std::string& path, const std::string& field) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(field, ": ", path, ": ", std::strerror(errno)));
  }
  FileStamp stamp;
  stamp.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  stamp.size = st.st_size;
  stamp.inode = st.st_ino;
  return stamp;
}

}  // namespace nas

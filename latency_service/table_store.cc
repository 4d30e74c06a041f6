#include "latency_service/table_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

constexpr char kTableSuffix[] = ".table.json";
constexpr char kPredictorSuffix[] = ".predictor.json";
// A table file: the table's text limit plus room for "version".
constexpr uintmax_t kMaxTableFileBytes = kMaxLatencyTableBytes + 4096;

absl::Status OsError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return OsError("open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return OsError("fsync", path);
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDeviceName(absl::string_view name, const std::string& field) {
  if (name.empty() || name.size() > kMaxLatencyDeviceBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": device name must have 1 to ",
                                                   kMaxLatencyDeviceBytes, " characters, got ",
                                                   name.size()));
  }
  if (name[0] == '.' || name[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": device name \"", absl::CHexEscape(name), "\" must not start with '.' or '-'"));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": device name \"", absl::CHexEscape(name),
                       "\" may only use letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::filesystem::path p(path);
  std::filesystem::path dir = p.parent_path().empty() ? "." : p.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", dir.string(), ": ", ec.message()));
  std::string tmp = absl::StrCat(dir.string(), "/.", p.filename().string(), ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return OsError("create", tmp);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = OsError("write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status s = OsError("fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = OsError("rename to", path);
    ::unlink(tmp.c_str());
    return s;
  }
  return FsyncPath(dir.string(), O_RDONLY | O_DIRECTORY);
}

std::string TableStore::TablePath(const std::string& device) const {
  return absl::StrCat(dir_, "/", device, kTableSuffix);
}

std::string TableStore::PredictorPath(const std::string& device) const {
  return absl::StrCat(dir_, "/", device, kPredictorSuffix);
}

absl::Status TableStore::SaveTable(const LatencyTable& table, uint64_t version) const {
  NAS_RETURN_IF_ERROR(ValidateDeviceName(table.info().device, "device"));
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(table.ToJson(), "table"));
  j["version"] = version;
  return WriteFileAtomically(TablePath(table.info().device), j.dump(2));
}

absl::Status TableStore::SavePredictor(const LatencyPredictor& predictor) const {
  NAS_RETURN_IF_ERROR(ValidateDeviceName(predictor.device(), "device"));
  return WriteFileAtomically(PredictorPath(predictor.device()), predictor.ToJson());
}

absl::StatusOr<std::vector<StoredTable>> TableStore::LoadAll() const {
  std::vector<StoredTable> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) return out;
  std::vector<std::string> names;
  // Stepped with error codes: a range-for's increment throws on an I/O error.
  std::filesystem::directory_iterator it(dir_, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || !absl::EndsWith(name, kTableSuffix)) continue;
    names.push_back(name);
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", dir_, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(dir_, "/", name);
    const std::string device = name.substr(0, name.size() - std::strlen(kTableSuffix));
    if (const uintmax_t bytes = std::filesystem::file_size(path, ec);
        !ec && bytes > kMaxTableFileBytes) {
      return absl::DataLossError(absl::StrCat(path, ": ", bytes, " bytes, over the limit of ",
                                              kMaxTableFileBytes, " for a table file"));
    }
    NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    absl::StatusOr<LatencyTable> table = LatencyTable::ParseJson(text);
    if (!table.ok()) {
      return absl::DataLossError(absl::StrCat(path, ": ", table.status().message()));
    }
    if (table->info().device != device) {
      return absl::DataLossError(absl::StrCat(path, ": device \"", table->info().device,
                                              "\" does not match the file name"));
    }
    NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, path));
    auto version = j.find("version");
    if (version == j.end() || !version->is_number_unsigned() || version->get<uint64_t>() == 0) {
      return absl::DataLossError(absl::StrCat(path, ": version: expected a positive integer"));
    }
    StoredTable stored{std::move(*table), version->get<uint64_t>(), std::nullopt};
    const std::string ppath = PredictorPath(device);
    // A predictor file that is missing, too large, unreadable or invalid is refitted by the
    // caller (deterministic, milliseconds), never fatal.
    const uintmax_t pbytes = std::filesystem::file_size(ppath, ec);
    if (!ec && pbytes <= kMaxPredictorBytes) {
      absl::StatusOr<std::string> ptext = ReadFile(ppath);
      if (ptext.ok()) {
        absl::StatusOr<LatencyPredictor> p = LatencyPredictor::FromJson(*ptext);
        if (p.ok() && p->device() == device && p->table_version() == stored.version) {
          stored.predictor = std::move(*p);
        }
      }
    }
    out.push_back(std::move(stored));
  }
  return out;
}

}  // namespace nas

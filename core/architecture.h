// An architecture: one chosen candidate per edge of a search space.
//
//   {"space": "fashion-mnist", "choices": ["3x3_MBConv3", "Zero", "7x7_MBConv6", ...]}
//
//   NAS_ASSIGN_OR_RETURN(Architecture a, Architecture::FromJson(text, space));
//   NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(a.choices));
//
// The reference's network-config JSON (`proxyless_mobile.config.json`) imports against a space
// whose widths match it (FromReferenceConfig); a config from another space is an error naming
// the block that does not fit. Any config builds as a network via NetworkConfig directly.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/search_space.h"

namespace nas {

struct Architecture {
  std::string space;
  std::vector<int> choices;  // candidate index per edge

  static absl::StatusOr<Architecture> FromJson(const std::string& text, const SearchSpace& space);
  std::string ToJson(const SearchSpace& space) const;
  // Candidate names, e.g. "5x5_MBConv3 | Zero | ...".
  std::string ToString(const SearchSpace& space) const;

  static absl::StatusOr<Architecture> FromReferenceConfig(const std::string& text,
                                                          const SearchSpace& space);
  bool operator==(const Architecture& o) const {
    return space == o.space && choices == o.choices;
  }
};

}  // namespace nas

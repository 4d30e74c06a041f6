// Domain <-> proto conversions of the latency service, shared by the adapter and the client.
#pragma once

#include "latency_service/types.h"
#include "nas/latency.pb.h"

namespace nas {

void ToProto(const DeviceSummary& d, DeviceInfo* out);
DeviceSummary FromProto(const DeviceInfo& d);

}  // namespace nas

// The WorkerGateway's thin gRPC adapter (proto/nas/worker.proto): the caller must hold a worker
// credential (grpc_adapter.h's Callers), then one WorkerHandler call (the JobManager) per
// request; FetchTensors streams the tensors as codec chunks and CompleteTask reassembles a
// result's chunks with the codec (proto/tensor_codec.h) before the handler sees it. AcquireTask
// may take several tasks and inline the tensors the worker lacks.
//
// A synchronous service: AcquireTask's long poll holds its handler thread while it waits for a
// task (the handler's Acquire blocks). Internal to the coordinator's server.
#pragma once

#include <memory>

#include "coordinator/grpc_adapter.h"
#include "coordinator/handlers.h"
#include "nas/worker.grpc.pb.h"

namespace nas {

// `handler` and `callers` are not owned and must outlive the service.
std::unique_ptr<WorkerGateway::Service> NewWorkerGatewayAdapter(WorkerHandler* handler,
                                                               const adapter::Callers* callers);

}  // namespace nas

"""The coordinator's SearchService from Python: what nasctl does, for notebooks and scripts.

Example::

    from nasclient import Client

    c = Client("localhost:50051", token_file="~/.nas/token")
    job = c.submit({"space": "fashion-mnist", "device": "local-cpu", "searchEpochs": 2})
    for status in c.watch(job):
        print(status.state, status.round, status.expected_latency_ms)
    c.write_result_dir(job, "results/" + job)

Every method raises NasError (carrying the gRPC status code and message) when the coordinator
refuses or cannot be reached. A Client is safe to use from several threads (gRPC channels are).
"""

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Union

import grpc
from google.protobuf import json_format

from nas import search_pb2, search_pb2_grpc

JobSpec = search_pb2.JobSpec
JobStatus = search_pb2.JobStatus
JobResult = search_pb2.JobResult
GetQueueReply = search_pb2.GetQueueReply

# States after which a job changes no more (JobStatus.state).
ENDED_STATES = frozenset({"DONE", "FAILED", "CANCELLED"})

DEFAULT_TARGET = "localhost:50051"


class NasError(Exception):
    """A call the coordinator refused or that did not reach it.

    Attributes:
      code: the grpc.StatusCode, e.g. grpc.StatusCode.NOT_FOUND or UNAUTHENTICATED.
      message: the coordinator's (or gRPC's) explanation.
      method: the SearchService method that failed, e.g. "GetJob".
    """

    def __init__(self, method: str, code: grpc.StatusCode, message: str):
        self.method = method
        self.code = code
        self.message = message
        super().__init__(f"{method}: {code.name}: {message}")

    @classmethod
    def from_rpc_error(cls, method: str, e: grpc.RpcError) -> "NasError":
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, "details") else str(e)
        return cls(method, code or grpc.StatusCode.UNKNOWN, details or "")


def client_token(token_file: Optional[str] = None) -> str:
    """The caller's token as nasctl finds it (coordinator/search_client.cc ClientToken).

    The first line of `token_file` when given, else $NAS_TOKEN, else the first line of the file
    $NAS_TOKEN_FILE names, else "" (no token). Surrounding whitespace is stripped.
    """
    path = token_file or ""
    if not path:
        env = os.environ.get("NAS_TOKEN", "")
        if env:
            return env.strip()
        path = os.environ.get("NAS_TOKEN_FILE", "")
    if not path:
        return ""
    with open(os.path.expanduser(path), "r", encoding="utf-8") as f:
        text = f.read(64 << 10)
    return text.split("\n", 1)[0].strip()


def to_dict(message) -> Dict[str, Any]:
    """A message (JobStatus, JobResult, GetQueueReply, ...) as a plain dict with the proto's
    field names (job_id, expected_latency_ms, ...), unset fields included."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


def _spec(spec: Union[None, Dict[str, Any], "search_pb2.JobSpec"], fields: Dict[str, Any]):
    if spec is None:
        spec = {}
    if isinstance(spec, search_pb2.JobSpec):
        out = search_pb2.JobSpec()
        out.CopyFrom(spec)
        if fields:
            json_format.ParseDict(fields, out)
        return out
    if not isinstance(spec, dict):
        raise TypeError(f"spec: a dict or a JobSpec, not {type(spec).__name__}")
    merged = dict(spec)
    merged.update(fields)
    try:
        return json_format.ParseDict(merged, search_pb2.JobSpec())
    except json_format.ParseError as e:
        raise ValueError(f"job spec: {e}") from e


class Client:
    """A connection to the coordinator's SearchService.

    Args:
      target: "host:port"; default $NAS_COORDINATOR, else localhost:50051.
      token: the bearer token; default: as nasctl finds it (see client_token).
      token_file: a file whose first line is the token (used when `token` is not given).
      tls_ca: PEM certificates to trust for TLS; default $NAS_TLS_CA, else plaintext.
      timeout: deadline of each unary call in seconds (watch and downloads have none). 30.
    """

    def __init__(self, target: Optional[str] = None, token: Optional[str] = None,
                 token_file: Optional[str] = None, tls_ca: Optional[str] = None,
                 timeout: float = 30.0):
        self.target = target or os.environ.get("NAS_COORDINATOR") or DEFAULT_TARGET
        if token is None:
            token = client_token(token_file)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", 256 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        tls_ca = tls_ca or os.environ.get("NAS_TLS_CA") or None
        if tls_ca:
            with open(os.path.expanduser(tls_ca), "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            self._channel = grpc.secure_channel(self.target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(self.target, options=options)
        self._stub = search_pb2_grpc.SearchServiceStub(self._channel)

    def close(self) -> None:
        """Closes the channel; the client is unusable afterwards."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unary(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout,
                                               metadata=self._metadata)
        except grpc.RpcError as e:
            raise NasError.from_rpc_error(method, e) from None

    def submit(self, spec: Union[None, Dict[str, Any], "search_pb2.JobSpec"] = None,
               **fields) -> str:
        """Submits a search job; returns its id.

        `spec` is a JobSpec or a dict in the JSON form of one (the keys of `nasctl submit
        --spec`: "searchEpochs" or "search_epochs", ...); keyword arguments override its fields,
        e.g. submit(spec, priority=5). Zero or unset fields take the coordinator's defaults.
        Raises ValueError for an unknown field, NasError when the coordinator refuses.
        """
        req = search_pb2.SubmitJobRequest(spec=_spec(spec, fields))
        return self._unary("SubmitJob", req).job_id

    def get(self, job_id: str) -> "search_pb2.JobStatus":
        """The job's status now (to_dict(status) for a dict). NOT_FOUND for an unknown job or
        another tenant's."""
        return self._unary("GetJob", search_pb2.GetJobRequest(job_id=job_id))

    def watch(self, job_id: str) -> Iterator["search_pb2.JobStatus"]:
        """A generator of the job's statuses: the current one first, then one per change, until
        the job has ended (DONE, FAILED or CANCELLED: the last status yielded). Closing the
        generator early (break) ends the stream."""
        call = self._stub.WatchJob(search_pb2.GetJobRequest(job_id=job_id),
                                   metadata=self._metadata)
        try:
            for status in call:
                yield status
                if status.state in ENDED_STATES:
                    return
        except grpc.RpcError as e:
            raise NasError.from_rpc_error("WatchJob", e) from None
        finally:
            call.cancel()

    def wait(self, job_id: str) -> "search_pb2.JobStatus":
        """Blocks until the job has ended; returns its last status."""
        last = None
        for last in self.watch(job_id):
            pass
        return last

    def list(self, tenant: Optional[str] = None) -> List["search_pb2.JobStatus"]:
        """The jobs the caller may see (an admin: of `tenant`, or all)."""
        return list(self._unary("ListJobs", search_pb2.ListJobsRequest(tenant=tenant or "")).jobs)

    def cancel(self, job_id: str) -> None:
        """Cancels a job (no-op for one that has ended)."""
        self._unary("CancelJob", search_pb2.CancelJobRequest(job_id=job_id))

    def delete(self, job_id: str) -> None:
        """Deletes an ended job and everything kept of it. FAILED_PRECONDITION while it has not
        ended (cancel it first); NOT_FOUND for an unknown job."""
        self._unary("DeleteJob", search_pb2.DeleteJobRequest(job_id=job_id))

    def queue(self, tenant: Optional[str] = None) -> "search_pb2.GetQueueReply":
        """The queue as the caller's tenant sees it (an admin: `tenant`, or every tenant)."""
        return self._unary("GetQueue", search_pb2.GetQueueRequest(tenant=tenant or ""))

    def result(self, job_id: str) -> "search_pb2.JobResult":
        """The result of a DONE job: architecture, accuracies, latencies, the JSON documents
        and the names of its artifacts (for artifact())."""
        return self._unary("GetResult", search_pb2.GetJobRequest(job_id=job_id))

    def artifact(self, job_id: str, name: str) -> bytes:
        """The bytes of one artifact of a DONE job, e.g. "derived.pt" or "derived.onnx"
        (JobResult.artifacts)."""
        req = search_pb2.GetArtifactRequest(job_id=job_id, name=name)
        try:
            return b"".join(c.data for c in self._stub.GetArtifact(req, metadata=self._metadata))
        except grpc.RpcError as e:
            raise NasError.from_rpc_error("GetArtifact", e) from None

    def write_result_dir(self, job_id: str, out_dir: str) -> List[str]:
        """Writes the job's result directory as `nasctl result --out` does: architecture.json,
        network.json, search_space.json, latency_table.json, job_spec.json, report.json,
        alpha_history.jsonl, every artifact (derived.pt, baseline.pt, derived.onnx, baseline.onnx),
        report.md and report.html. Returns the paths written."""
        r = self.result(job_id)
        os.makedirs(out_dir, exist_ok=True)
        written = []

        def write(name: str, data: Union[str, bytes]) -> None:
            path = os.path.join(out_dir, name)
            with open(path, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            written.append(path)

        write("architecture.json", r.architecture_json)
        write("network.json", r.network_json)
        write("search_space.json", r.space_json)
        write("latency_table.json", r.latency_table_json)
        write("job_spec.json", r.spec_json)
        write("report.json", r.report_json)
        write("alpha_history.jsonl", "".join(h + "\n" for h in r.history))
        for name in r.artifacts:
            if not name or name != os.path.basename(name) or name in (".", ".."):
                raise NasError("GetResult", grpc.StatusCode.DATA_LOSS,
                               f"artifact name {name!r} is not a plain file name")
            write(name, self.artifact(job_id, name))
        write("report.md", _report_markdown(r))
        if r.report_html:  # drawn by the coordinator (empty for jobs finished before it did)
            write("report.html", r.report_html)
        return written


def _report_markdown(r: "search_pb2.JobResult") -> str:
    rep = json.loads(r.report_json) if r.report_json else {}
    md = (f"# Search report (job {r.job_id})\n\n"
          f"space `{rep.get('space', '')}`, data `{rep.get('dataset', '')}`, device "
          f"`{rep.get('device', '')}` ({rep.get('runtime', '')}), loss {rep.get('loss', '')}, "
          f"target {float(rep.get('target_latency_ms', 0.0)):.3f} ms, seed "
          f"{int(rep.get('seed', 0))}, {int(rep.get('rounds', 0))} rounds\n\n"
          "| network | test acc | predicted ms | measured ms | params |\n|---|---|---|---|---|\n")
    for label in ("derived", "baseline"):
        n = rep.get(label)
        if not isinstance(n, dict):
            continue
        md += (f"| {label} | {100 * float(n.get('test_accuracy', 0.0)):.2f}% | "
               f"{float(n.get('predicted_latency_ms', 0.0)):.3f} | "
               f"{float(n.get('measured_latency_ms', 0.0)):.3f} +/- "
               f"{float(n.get('measured_latency_std_ms', 0.0)):.3f} | "
               f"{int(n.get('parameters', 0))} |\n")
    if isinstance(rep.get("derived"), dict):
        md += f"\nderived: {rep['derived'].get('architecture', '')}\n"
    return md

"""nasclient: a Python client of the ProxylessNAS search service's coordinator.

    from nasclient import Client
    c = Client()  # $NAS_COORDINATOR, token from $NAS_TOKEN / $NAS_TOKEN_FILE
    job = c.submit({"space": "fashion-mnist", "device": "local-cpu"})
    print(c.wait(job).state)

The gRPC stubs (package `nas`) are generated at build time into <build>/clients/python/gen;
put that folder and clients/python on PYTHONPATH (clients/python/README.md).
"""

from nasclient.client import (DEFAULT_TARGET, ENDED_STATES, Client, GetQueueReply, JobResult,
                              JobSpec, JobStatus, NasError, client_token, to_dict)

__all__ = ["Client", "NasError", "JobSpec", "JobStatus", "JobResult", "GetQueueReply",
           "ENDED_STATES", "DEFAULT_TARGET", "client_token", "to_dict"]

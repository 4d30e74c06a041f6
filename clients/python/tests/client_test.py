"""nasclient against a real coordinator process (issue 23): a whole tiny job driven from Python.

One coordinator (tokens file, a latency table made by `nas profile`, RocksDB in a temporary
directory) and simulated workers (sim_workers) as processes on loopback, shared by the tests.
The binaries come from $NAS_COORDINATOR_BIN, $NAS_SIM_WORKERS_BIN and $NAS_BIN (the ctest
entry in clients/python/CMakeLists.txt sets them and PYTHONPATH). Exits 77 (skipped) only when
python3-grpcio or python3-protobuf is missing.
Usage: PYTHONPATH=<build>/clients/python/gen:clients/python python3 client_test.py -v
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import grpc  # noqa: F401
    import google.protobuf  # noqa: F401
except ImportError as e:
    print(f"SKIP: {e} (Debian: apt-get install python3-grpcio python3-protobuf)")
    sys.exit(77)

from nasclient import Client, NasError, client_token, to_dict  # noqa: E402

ALICE = "tok-alice-0123456789"
BOB = "tok-bob-0123456789ab"
WORKER = "tok-worker-012345678"
TOKENS = f"""{ALICE} alice vision
{BOB} bob speech
{WORKER} sim lab worker
"""
# Tiny: two search epochs, one epoch of final training, on simulated workers.
TINY = {"space": "fashion-mnist", "device": "local-cpu", "warmupEpochs": 1, "searchEpochs": 2,
        "trainEpochs": 1, "batchSize": 50, "archEvery": 2, "seed": "5", "parallelTasks": 1,
        "chainSteps": 1}


def _binary(env: str) -> str:
    path = os.environ.get(env, "")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"${env} must name the built binary (got {path!r})")
    return path


def _wait_for_line(log: str, pattern: str, proc: subprocess.Popen, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(log, encoding="utf-8", errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(log, encoding="utf-8", errors="replace") as f:
        raise RuntimeError(f"no {pattern!r} in {log}:\n{f.read()}")


class ClientEndToEnd(unittest.TestCase):
    procs = []
    logs = []

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="nasclient-test-")
        cls.alice = None
        cls.addClassCleanup(cls._stop)  # also when setUpClass fails half-way
        w = cls.work
        for var in ("NAS_COORDINATOR", "NAS_TOKEN", "NAS_TOKEN_FILE", "NAS_TLS_CA"):
            os.environ.pop(var, None)
        table = os.path.join(w, "table.json")
        with open(os.path.join(w, "profile.log"), "wb") as log:
            rc = subprocess.call([_binary("NAS_BIN"), "profile", "--space", "fashion-mnist",
                                  "--device", "local-cpu", "--threads", "1",
                                  "--profile_repeats", "3", "--table_out", table],
                                 stdout=log, stderr=subprocess.STDOUT, cwd=w)
        if rc != 0:
            with open(os.path.join(w, "profile.log"), encoding="utf-8") as f:
                raise RuntimeError(f"nas profile failed ({rc}):\n{f.read()}")
        with open(os.path.join(w, "tokens"), "w", encoding="utf-8") as f:
            f.write(TOKENS)
        with open(os.path.join(w, "worker-token"), "w", encoding="utf-8") as f:
            f.write(WORKER + "\n")
        with open(os.path.join(w, "alice-token"), "w", encoding="utf-8") as f:
            f.write(ALICE + "\n# the first line only\n")

        cls.coord_log = os.path.join(w, "coordinator.log")
        coord = subprocess.Popen(
            [_binary("NAS_COORDINATOR_BIN"), "--address=127.0.0.1", "--port=0",
             "--worker_port=0", "--metrics_port=-1", f"--db={os.path.join(w, 'db')}",
             "--lease_ms=3000", "--heartbeat_ms=300", f"--tokens_file={w}/tokens",
             f"--latency_table={table}"],
            stdout=cls._log(cls.coord_log), stderr=subprocess.STDOUT)
        cls.procs.append(coord)
        port = _wait_for_line(cls.coord_log, r"listening on port (\d+)", coord, 30)
        worker_port = _wait_for_line(cls.coord_log, r"workers on port (\d+)", coord, 10)
        cls.target = f"127.0.0.1:{port}"
        cls.sim_log = os.path.join(w, "sim.log")
        cls.procs.append(subprocess.Popen(
            [_binary("NAS_SIM_WORKERS_BIN"), f"--coordinator=127.0.0.1:{worker_port}",
             "--workers=2", "--compute_ms=20", f"--token_file={w}/worker-token"],
            stdout=cls._log(cls.sim_log), stderr=subprocess.STDOUT))
        cls.alice = Client(cls.target, token=ALICE)

    @classmethod
    def _log(cls, path):
        cls.logs.append(open(path, "wb"))
        return cls.logs[-1]

    @classmethod
    def _stop(cls):
        if cls.alice is not None:
            cls.alice.close()
        for p in cls.procs:
            p.kill()
            p.wait()
        for f in cls.logs:
            f.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        for p in self.procs:
            self.assertIsNone(p.poll(), f"a server process exited; see {self.coord_log}")

    def test_whole_tiny_job(self):
        c = self.alice
        job = c.submit(TINY)
        self.assertTrue(job)
        statuses = list(c.watch(job))
        last = statuses[-1]
        self.assertEqual(last.state, "DONE", to_dict(last))
        self.assertEqual(last.job_id, job)
        self.assertEqual(last.tenant, "vision")
        self.assertEqual(last.owner, "alice")
        self.assertTrue(all(s.state != "DONE" for s in statuses[:-1]))
        rounds = [s.round for s in statuses]
        self.assertEqual(rounds, sorted(rounds), "rounds go forward")
        self.assertGreater(last.round, 0)
        self.assertEqual(c.get(job).state, "DONE")
        self.assertEqual(c.wait(job).state, "DONE")  # an ended job: one status

        r = c.result(job)
        self.assertEqual(r.job_id, job)
        self.assertTrue(r.architecture.choices)
        self.assertTrue(r.history)
        self.assertIn("derived.pt", list(r.artifacts))
        spec = json.loads(r.spec_json)
        self.assertEqual(spec.get("searchEpochs", spec.get("search_epochs")), 2)
        derived = c.artifact(job, "derived.pt")
        self.assertIsInstance(derived, bytes)
        self.assertGreater(len(derived), 0)

        out = os.path.join(self.work, "result")
        written = c.write_result_dir(job, out)
        for name in ["architecture.json", "report.json", "alpha_history.jsonl", "network.json",
                     "search_space.json", "latency_table.json", "job_spec.json", "report.md",
                     "report.html"] + \
                list(r.artifacts):
            path = os.path.join(out, name)
            self.assertIn(path, written)
            self.assertTrue(os.path.isfile(path), name)
        with open(os.path.join(out, "architecture.json"), encoding="utf-8") as f:
            self.assertEqual(f.read(), r.architecture_json)
        json.loads(r.architecture_json)
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            json.load(f)
        with open(os.path.join(out, "alpha_history.jsonl"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(lines, list(r.history))
        for line in lines:
            json.loads(line)
        with open(os.path.join(out, "derived.pt"), "rb") as f:
            self.assertEqual(f.read(), derived)
        with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
            self.assertIn(f"job {job}", f.read())
        # The coordinator's page: one heat-map row per edge of the job's space.
        with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
            page = f.read()
        edges = len(json.loads(r.architecture_json)["choices"])
        self.assertEqual(page.count('class="heatmap-row"'), edges)
        self.assertIn(f"job {job}", page)

        self.assertIn(job, [s.job_id for s in c.list()])
        q = c.queue()
        self.assertEqual([t.tenant for t in q.tenants], ["vision"])
        self.assertEqual(q.policy, "fair-share")
        self.assertIsInstance(to_dict(q), dict)

        c.delete(job)
        with self.assertRaises(NasError) as e:
            c.get(job)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertNotIn(job, [s.job_id for s in c.list()])

    def test_cancel_a_second_job(self):
        c = self.alice
        # Long enough (~200 rounds) to be cancelled before it ends.
        job = c.submit(dict(TINY, searchEpochs=40, trainEpochs=-1), priority=1)
        self.assertIn(c.get(job).state, {"QUEUED", "PREPARING", "RUNNING"})
        with self.assertRaises(NasError) as e:
            c.delete(job)
        self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn(job, [s.job_id for s in c.list(tenant="vision")])
        watch = c.watch(job)
        first = next(watch)
        self.assertEqual(first.job_id, job)
        self.assertEqual(first.priority, 1)
        c.cancel(job)
        last = first
        for last in watch:
            pass
        self.assertEqual(last.state, "CANCELLED")
        self.assertEqual(c.get(job).state, "CANCELLED")
        c.delete(job)
        with self.assertRaises(NasError) as e:
            c.result(job)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_unauthenticated(self):
        for token in ("", "tok-nobody-0123456789"):
            with Client(self.target, token=token) as anon:
                with self.assertRaises(NasError) as e:
                    anon.list()
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
                self.assertEqual(e.exception.method, "ListJobs")
                self.assertIn("UNAUTHENTICATED", str(e.exception))
                self.assertTrue(e.exception.message)
                with self.assertRaises(NasError) as e:
                    anon.submit(TINY)
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
                with self.assertRaises(NasError) as e:
                    list(anon.watch("j-none"))
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)

    def test_tenant_isolation_and_not_found(self):
        job = self.alice.submit(dict(TINY, searchEpochs=40, trainEpochs=-1))
        try:
            with Client(self.target, token=BOB) as bob:
                for call in (bob.get, bob.cancel, bob.result):
                    with self.assertRaises(NasError) as e:
                        call(job)
                    self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
                self.assertNotIn(job, [s.job_id for s in bob.list()])
        finally:
            self.alice.cancel(job)
        self.assertEqual(self.alice.wait(job).state, "CANCELLED")
        with self.assertRaises(ValueError):
            self.alice.submit(TINY, no_such_field=1)

    def test_environment_like_nasctl(self):
        os.environ["NAS_COORDINATOR"] = self.target
        os.environ["NAS_TOKEN_FILE"] = os.path.join(self.work, "alice-token")
        try:
            self.assertEqual(client_token(), ALICE)
            with Client() as c:
                self.assertEqual(c.target, self.target)
                c.list()
            os.environ["NAS_TOKEN"] = "tok-nobody-0123456789"  # NAS_TOKEN before the file
            with Client() as c:
                with self.assertRaises(NasError) as e:
                    c.list()
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
            # An explicit token_file wins over NAS_TOKEN, as nasctl's --token_file does.
            with Client(token_file=os.environ["NAS_TOKEN_FILE"]) as c:
                c.list()
        finally:
            for var in ("NAS_COORDINATOR", "NAS_TOKEN", "NAS_TOKEN_FILE"):
                os.environ.pop(var, None)


if __name__ == "__main__":
    unittest.main()

"""Load: POST /api/v1/predict at saturation against 2 gunicorn workers on 127.0.0.1 for 60 s, from a second process.

wrk drives the load (`apt-get install wrk`; installed here when missing and we are root); without it a Python load
generator runs in a subprocess instead. Reported: requests, errors, throughput, latency p50/p90/p99, and each
worker's resident memory sampled every second over the run (flat, or growing?). Only loopback is ever a target,
and every loop is bounded in time.

Also home of the helpers the other server-side benchmarks and tests share: ``GunicornServer`` (the project's
gunicorn config on a free loopback port) and ``update_testing_report`` (rewrites one section of
docs/testing-report.md).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
TESTING_REPORT = REPO / "docs" / "testing-report.md"
SHIPPED = REPO / "model_artifacts" / "current"
API = "/api/v1/predict"
# A fully specified patient (no unknown input to average over), as the load's one request body.
PATIENT = {
    "who_grade": 2,
    "tumor_burden": "25-50%",
    "prior_resection_ablation": True,
    "tumor_type": "gut",
    "extrahepatic_metastases": False,
    "octreotide": True,
    "biologic": False,
    "cytotoxic": False,
}
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", 60))
CONNECTIONS = int(os.environ.get("BENCH_LOAD_CONNECTIONS", 8))
WORKERS = 2


# --- a gunicorn server on loopback ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GunicornServer:
    """``gunicorn --config gunicorn.conf.py 'calculator:create_app()'`` on 127.0.0.1 and a free port.

    Use as a context manager: it returns once every worker has loaded the model, and stops the server (SIGTERM,
    then SIGKILL to the processes it started if they linger) on exit. Logs (JSON lines) go to ``log_path``.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        workers: int = WORKERS,
        gunicorn: str | Path | None = None,
        cwd: str | Path = REPO,
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
        ready_timeout: float = 120.0,
        app: str = "calculator:create_app()",
    ) -> None:
        self.port = free_port()
        self.app = app
        self.workers = workers
        self.gunicorn = str(gunicorn or Path(sys.executable).parent / "gunicorn")
        self.cwd = Path(cwd)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.env = {
            **os.environ,
            "CALCULATOR_MODEL_DIR": str(model_dir),
            "CALCULATOR_BIND": f"127.0.0.1:{self.port}",
            "CALCULATOR_WORKERS": str(workers),
            "CALCULATOR_RATE_LIMIT_PER_MINUTE": "0",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None
        self._started: list[psutil.Process] = []

    def __enter__(self) -> GunicornServer:
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [self.gunicorn, "--config", "gunicorn.conf.py", self.app],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_loaded(self.workers)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            known = self.worker_processes()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            for worker in known:  # only the workers of this master, by pid
                try:
                    worker.kill()
                except psutil.Error:
                    pass
        self._log.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.Error:
            return []

    def records(self) -> list[dict]:
        """The server's log so far, one dict per JSON line (anything else is kept as a 'raw' record)."""
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def wait_loaded(self, count: int, timeout: float | None = None) -> None:
        """Until ``count`` 'model loaded' records are in the log (each worker logs one when it boots)."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while sum(r.get("message") == "model loaded" for r in self.records()) < count:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not loaded in time:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30.0
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def predict(self, patient: dict, headers: dict | None = None, timeout: float = 30.0):
        return self.request(
            "POST", API, json.dumps(patient).encode(), {"Content-Type": "application/json", **(headers or {})}, timeout
        )


# --- the report file -------------------------------------------------------------------------------------------


def update_testing_report(section: str, lines: list[str]) -> None:
    """Replace the text between ``<!-- BEGIN section -->`` and ``<!-- END section -->`` in docs/testing-report.md."""
    text = TESTING_REPORT.read_text(encoding="utf-8")
    begin, end = f"<!-- BEGIN {section} -->", f"<!-- END {section} -->"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    TESTING_REPORT.write_text(head + begin + "\n" + "\n".join(lines).strip("\n") + "\n" + end + tail, encoding="utf-8")


def run_stamp() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {len(os.sched_getaffinity(0))} CPUs, "
        f"CPython {sys.version.split()[0]}; load average before the run {load}."
    )


def model_for_benchmarks(workdir: Path) -> tuple[Path, str]:
    """The shipped model when there is one that loads; else a small test model built here (said in the report)."""
    from prognosis.store import ModelLoadError, load_model

    try:
        model = load_model(SHIPPED)
        return SHIPPED, f"the shipped model `{model.version}`"
    except ModelLoadError:
        sys.path.insert(0, str(REPO))
        from tests.model_fixtures import build_model

        path = build_model(workdir / "bench-model", 2000, 11, "bench-synthetic-2000", validate=False)
        return path, "a 2,000-patient synthetic test model (no shipped model was present)"


# --- load generators -------------------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def ensure_wrk() -> str | None:
    """wrk's path; installed with apt-get when missing and we are root, as `make test` does for chromium."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True)
    return shutil.which("wrk")


def run_wrk(wrk: str, url: str, body: bytes, seconds: float, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % json.dumps(body.decode()))
    try:
        result = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", "-s", script.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    data = json.loads(line[len("WRK_JSON ") :])
    return {
        "tool": f"wrk -t1 -c{connections} -d{int(seconds)}s",
        "requests": data["requests"],
        "seconds": data["duration_us"] / 1e6,
        "non_2xx": data["status"],
        "socket_errors": data["connect"] + data["read"] + data["write"] + data["timeout"],
        "p50_ms": data["p50_us"] / 1e3,
        "p90_ms": data["p90_us"] / 1e3,
        "p99_ms": data["p99_us"] / 1e3,
        "max_ms": data["max_us"] / 1e3,
    }


def _generate(port: int, body: bytes, seconds: float, connections: int) -> None:
    """Runs in the load-generating subprocess: ``connections`` threads, each one request at a time."""
    latencies: list[float] = []
    counts = {"non_2xx": 0, "socket_errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("POST", API, body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                connection.close()
                ok = 200 <= response.status < 300
                with lock:
                    latencies.append(time.perf_counter() - started)
                    counts["non_2xx"] += not ok
            except OSError:
                with lock:
                    counts["socket_errors"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"latencies": latencies, "seconds": time.monotonic() - started, **counts}))


def run_python_generator(port: int, body: bytes, seconds: float, connections: int) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load_benchmark",
            "--generate",
            str(port),
            body.decode(),
            str(seconds),
            str(connections),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    ms = sorted(1000 * x for x in data["latencies"])
    return {
        "tool": f"Python load generator, {connections} threads, {int(seconds)} s (wrk was not available)",
        "requests": len(ms) + data["socket_errors"],
        "seconds": data["seconds"],
        "non_2xx": data["non_2xx"],
        "socket_errors": data["socket_errors"],
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else float("nan"),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


# --- memory sampling -------------------------------------------------------------------------------------------


class MemorySampler(threading.Thread):
    """Each worker's RSS once a second, until stopped (at most ``limit`` seconds)."""

    def __init__(self, server: GunicornServer, limit: float) -> None:
        super().__init__(daemon=True)
        self.server, self.limit = server, limit
        self.samples: dict[int, list[tuple[float, int]]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - started < self.limit:
            for worker in self.server.worker_processes():
                try:
                    self.samples.setdefault(worker.pid, []).append(
                        (time.monotonic() - started, worker.memory_info().rss)
                    )
                except psutil.Error:
                    pass
            self.stop.wait(1.0)


def memory_rows(samples: dict[int, list[tuple[float, int]]]) -> tuple[list[str], float]:
    """Table rows per worker, and the largest growth (MiB) from the first to the last ten seconds."""
    rows, worst = [], 0.0
    mib = 1024**2
    for pid, series in sorted(samples.items()):
        values = [rss for _, rss in series]
        head = statistics.mean(values[:10]) / mib
        tail = statistics.mean(values[-10:]) / mib
        worst = max(worst, tail - head)
        rows.append(
            f"| {pid} | {len(values)} | {values[0] / mib:.1f} | {head:.1f} | {tail:.1f} | "
            f"{max(values) / mib:.1f} | {tail - head:+.1f} |"
        )
    return rows, worst


# --- the benchmark ---------------------------------------------------------------------------------------------


def run(report_lines: list[str]) -> None:
    """60 s of saturating load on 2 workers; the figures go to the benchmark report and docs/testing-report.md."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, model_note = model_for_benchmarks(Path(tmp))
        stamp = run_stamp()
        body = json.dumps(PATIENT).encode()
        with GunicornServer(model_dir, workers=WORKERS, log_path=Path(tmp) / "gunicorn.log") as server:
            status, _, _ = server.predict(PATIENT)
            assert status == 200, status
            for _ in range(20):  # warm-up: first requests import lazily-loaded code
                server.predict(PATIENT)
            pids_before = sorted(w.pid for w in server.worker_processes())
            sampler = MemorySampler(server, limit=SECONDS + 30)
            sampler.start()
            wrk = ensure_wrk()
            if wrk:
                result = run_wrk(wrk, server.base_url + API, body, SECONDS, CONNECTIONS)
            else:
                result = run_python_generator(server.port, body, SECONDS, CONNECTIONS)
            sampler.stop.set()
            sampler.join()
            pids_after = sorted(w.pid for w in server.worker_processes())
            records = server.records()
        served = [r for r in records if r.get("message") == "request" and r.get("path") == API]
        server_errors = [r for r in records if r.get("level") in ("ERROR", "CRITICAL")]
        statuses: dict[int, int] = {}
        for r in served:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        mem_rows, growth = memory_rows(sampler.samples)

    errors = result["non_2xx"] + result["socket_errors"]
    throughput = result["requests"] / result["seconds"]
    lines = [
        f"## Load: POST /api/v1/predict at saturation, 2 gunicorn workers, {SECONDS:g} s",
        "",
        f"{stamp} Server: `gunicorn --config gunicorn.conf.py` (sync workers, {WORKERS} of them, rate limit off) "
        f"on 127.0.0.1 serving {model_note}; load from a second process: {result['tool']}. Body: one fully "
        "specified patient (no unknown input to average over). Generator and server share the 2 cores.",
        "",
        "| requests | errors (non-2xx + socket) | throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|---|",
        f"| {result['requests']:,} | {errors} ({result['non_2xx']} + {result['socket_errors']}) | {throughput:.1f} | "
        f"{result['p50_ms']:.1f} | {result['p90_ms']:.1f} | {result['p99_ms']:.1f} | {result['max_ms']:.1f} |",
        "",
        f"Server side: {len(served):,} requests logged, statuses {statuses}; {len(server_errors)} error records; "
        f"workers {'unchanged' if pids_before == pids_after else 'REPLACED'} (pids {pids_before}).",
        "",
        "Resident memory per worker, sampled every second (MiB):",
        "",
        "| worker pid | samples | at start | mean, first 10 s | mean, last 10 s | max | growth |",
        "|---|---|---|---|---|---|---|",
        *mem_rows,
        "",
        f"Memory {'flat' if growth < 5 else 'GROWING'}: largest growth between the first and the last ten seconds "
        f"{growth:+.1f} MiB.",
        "",
    ]
    report_lines.extend(lines)
    update_testing_report("load", lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        _generate(int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4]), int(sys.argv[5]))
    else:
        out: list[str] = []
        run(out)
        print("\n".join(out))

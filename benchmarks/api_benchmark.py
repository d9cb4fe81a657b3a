"""The API's latency beside the cheapest route (/healthz) of the same app, under the same gunicorn, in the same run.

Measured as issue 11 asks: one gunicorn worker (the project's gunicorn.conf.py), keep-alive (a gthread worker with one
thread: the configured sync workers close every connection, so they are measured too, as a second server), varied
patients (required inputs at random; optional inputs all known, each known with probability 1/2, or all unknown),
and per patient kind the median of ``POST /api/v1/predict`` over the median of ``GET /healthz``. One client in this
process sends one request at a time on one connection, the routes in a random order in every round so that any drift
in the machine's load hits all of them alike. Client latency is what the client waits; server time is the app's own
``duration_ms`` from its access log. Target (issue 11): predict p50 <= 2x healthz p50 for every patient kind.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load_benchmark import (
    API,
    GunicornServer,
    model_for_benchmarks,
    percentile,
    run_stamp,
    update_testing_report,
)
from prognosis import covariates

ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", 1000))
MAX_SECONDS = float(os.environ.get("BENCH_API_SECONDS", 240))
HEALTHZ = "GET /healthz"
KINDS = {
    "every optional input known": "known",
    "some unknown (each with probability 1/2)": "some",
    "every optional input unknown": "unknown",
}
KEEP_ALIVE = "--worker-class gthread --threads 1 --keep-alive 30"
# The revision measured as "before" (the previous scoring and JSON encoder), read from git into a temporary directory.
BEFORE = os.environ.get("BENCH_API_BEFORE", "e51a6ff")
APP = "calculator:create_app()"
FLOOR = "floor: scoring replaced by one fixed answer, gthread worker, 1 thread, keep-alive"
# name -> (extra gunicorn settings (GUNICORN_CMD_ARGS; gunicorn.conf.py sets no worker class), revision or None, app)
SERVERS = {
    "now: gthread worker, 1 thread, keep-alive": (KEEP_ALIVE, None, APP),
    "now: sync worker as configured (a connection per request)": ("", None, APP),
    FLOOR: (KEEP_ALIVE, None, "benchmarks.api_floor:create_app()"),
    f"before ({BEFORE}): gthread worker, 1 thread, keep-alive": (KEEP_ALIVE, BEFORE, APP),
}
SOURCES = ("prognosis", "calculator", "templates", "gunicorn.conf.py")


def json_value(cov: covariates.Covariate, level: str) -> object:
    """A canonical level as the API takes it (integer grades, booleans for binary inputs)."""
    if cov.binary:
        return level == "1"
    return int(level) if all(v.isdigit() for v in cov.levels) else level


def varied_bodies(kind: str, n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = {}
        for cov in covariates.COVARIATES:
            if cov.required or kind == "known" or (kind == "some" and rng.random() < 0.5):
                body[cov.name] = json_value(cov, rng.choice(cov.levels))
        out.append(json.dumps(body).encode())
    return out


class Client:
    """One request at a time; on one kept-alive connection when the server keeps it, else a new one each time."""

    def __init__(self, port: int, keep_alive: bool) -> None:
        self.port, self.keep_alive = port, keep_alive
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None, request_id: str) -> tuple[int, float]:
        headers = {"X-Request-ID": request_id, **({"Content-Type": "application/json"} if body else {})}
        started = time.perf_counter()
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        response.read()
        elapsed = 1000 * (time.perf_counter() - started)
        if not self.keep_alive or response.getheader("Connection", "").lower() == "close":
            self.connection.close()
            self.connection = None
        return response.status, elapsed


def checkout(revision: str, into: Path) -> Path:
    """The app's sources at ``revision``, read from git (the repository is not touched) into ``into``."""
    import io
    import subprocess
    import tarfile

    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "archive", revision, *SOURCES], cwd=repo, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(
    model_dir: Path, settings: str, log_path: Path, cwd: Path | None = None, app: str = APP
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Client and server milliseconds per route name (healthz and one per patient kind), the WSGI ``app`` from
    ``cwd`` (default: this checkout)."""
    bodies = {label: varied_bodies(kind, ROUNDS, seed) for seed, (label, kind) in enumerate(KINDS.items())}
    client_ms: dict[str, list[float]] = {name: [] for name in (HEALTHZ, *KINDS)}
    ids: dict[str, str] = {}
    rng = random.Random(7)
    env = {"GUNICORN_CMD_ARGS": settings} if settings else {}
    where = {"cwd": cwd, "env": {**env, "PYTHONPATH": str(cwd)}} if cwd else {"env": env}
    with GunicornServer(model_dir, workers=1, log_path=log_path, app=app, **where) as server:  # type: ignore[arg-type]
        client = Client(server.port, keep_alive=bool(settings))
        for i in range(30):  # warm-up
            client.request("GET", "/healthz", None, f"warm-h-{i}")
            for label in KINDS:
                client.request("POST", API, bodies[label][-1 - i], f"warm-{label}-{i}")
        deadline = time.monotonic() + MAX_SECONDS
        for i in range(ROUNDS):
            if time.monotonic() > deadline:
                break
            names = [HEALTHZ, *KINDS]
            rng.shuffle(names)
            for k, name in enumerate(names):
                request_id = f"bench-{i}-{k}"
                ids[request_id] = name
                if name == HEALTHZ:
                    status, ms = client.request("GET", "/healthz", None, request_id)
                else:
                    status, ms = client.request("POST", API, bodies[name][i], request_id)
                assert status == 200, (name, status)
                client_ms[name].append(ms)
        records = server.records()
    server_ms: dict[str, list[float]] = {name: [] for name in client_ms}
    for record in records:
        route = ids.get(record.get("request_id", ""))
        if route and record.get("message") == "request":
            server_ms[route].append(record["duration_ms"])
    return client_ms, server_ms


def run(report_lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, model_note = model_for_benchmarks(Path(tmp))
        stamp = run_stamp()
        results = {}
        for k, (name, (settings, revision, app)) in enumerate(SERVERS.items()):
            cwd = checkout(revision, Path(tmp) / f"app-{k}") if revision else None
            results[name] = measure(model_dir, settings, Path(tmp) / f"gunicorn-{k}.log", cwd, app)
    lines = [
        "## API latency beside /healthz, same app, same gunicorn, same run",
        "",
        f"{stamp} One gunicorn worker (`gunicorn --config gunicorn.conf.py`, rate limit off) on 127.0.0.1 serving "
        f"{model_note}, one client in another process sending one request at a time, the four routes in a random "
        f"order in every round; each round a new varied patient per kind (required inputs at random, optional inputs "
        f"all known, each known with probability 1/2, or all unknown). The configured sync workers close every "
        f"connection, so the keep-alive figures come from a gthread worker with one thread "
        f"(`GUNICORN_CMD_ARGS='{KEEP_ALIVE}'`); the sync worker is shown beside it. Before: the app at `{BEFORE}` "
        "(the previous scoring and json-module encoder), read from git, on the same model and patients. *Floor*: the "
        "same app with scoring replaced by one fixed answer of the same shape (`benchmarks/api_floor.py`: the request "
        "is parsed, checked, encoded and sent as usual), so its ratio is what no scoring speed-up can go below. "
        "Client latency is what the client waits; server time is the app's own `duration_ms` (access log). Target "
        "(issue 11): predict p50 <= 2x healthz p50 for every patient kind.",
        "",
    ]
    for server_name, (client_ms, server_ms) in results.items():
        trivial = statistics.median(client_ms[HEALTHZ])
        lines += [
            f"### {server_name}",
            "",
            "| route | requests | client p50 (ms) | client p90 | client p99 | server p50 (ms) | server p99 "
            "| p50 / healthz p50 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in client_ms:
            c, s = sorted(client_ms[name]), sorted(server_ms[name])
            route = name if name == HEALTHZ else f"POST /api/v1/predict, {name}"
            lines.append(
                f"| {route} | {len(c)} | {statistics.median(c):.2f} | {percentile(c, 90):.2f} | "
                f"{percentile(c, 99):.2f} | {statistics.median(s):.2f} | {percentile(s, 99):.2f} | "
                f"{statistics.median(c) / trivial:.2f}x |"
            )
        ratios = {name: statistics.median(client_ms[name]) / trivial for name in KINDS}
        verdict = "met" if max(ratios.values()) <= 2 else "not met"
        verdict = f"target <= 2x: {verdict}" if server_name != FLOOR else "no scoring: the lowest reachable"
        lines += [
            "",
            "Median ratio to healthz: "
            + "; ".join(f"{name}: **{ratio:.2f}x**" for name, ratio in ratios.items())
            + f" ({verdict}).",
            "",
        ]
    lines += ["Rerun: `.venv/bin/python -m benchmarks.api_benchmark` (`BENCH_API_ROUNDS`, `BENCH_API_SECONDS`).", ""]
    report_lines.extend(lines)
    update_testing_report("api", lines)


def write_section(name: str, lines: list[str]) -> Path:
    """benchmarks/results/NAME.md, headed as ``python -m benchmarks`` heads it (REPORT.md is left as it is)."""
    import platform
    from datetime import UTC, datetime

    path = Path(__file__).parent / "results" / f"{name}.md"
    head = (
        f"<!-- {name}: run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, {len(os.sched_getaffinity(0))} CPUs -->"
    )
    path.write_text("\n".join([head, "", *lines]) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    out: list[str] = []
    run(out)
    print("\n".join(out))
    print(f"wrote {write_section('api', out)}", file=sys.stderr)

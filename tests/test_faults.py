"""Faults: the model directory breaking under a running service (not ready, with a clear reason, and back when it
is repaired), and a gunicorn worker killed with SIGKILL under load (replaced; requests keep succeeding).

kill -9 during fit and promote is tested with the retraining workflow (tests/test_retrain.py).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.load_benchmark import GunicornServer
from calculator import create_app
from tests.conftest import TEST_CONFIG
from training import artifact
from training.card import render_markdown

API = "/api/v1/predict"
GOOD = {"who_grade": 1, "tumor_burden": "50-75%", "prior_resection_ablation": False}
VERSION = "test-synthetic-2000"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def other_version(model_dir, tmp_path_factory) -> Path:
    """The same fit relabelled as another version: a different manifest, equally valid."""
    path = tmp_path_factory.mktemp("other") / "v2"
    shutil.copytree(model_dir, path)
    card = json.loads((path / "model_card.json").read_text())
    card["model_version"] = "other-version"
    artifact.update_card(path, card, render_markdown(card))
    return path


# --- the model directory breaks, then is repaired ---------------------------------------------------------------


def _change_a_file(d: Path, stash: dict):
    stash["bytes"] = (d / "os.npz").read_bytes()
    (d / "os.npz").write_bytes(stash["bytes"] + b"\0")
    return lambda: (d / "os.npz").write_bytes(stash["bytes"])


def _remove_a_file(d: Path, stash: dict):
    (d / "hpfs.npz").rename(d.parent / "hpfs.npz.away")
    return lambda: (d.parent / "hpfs.npz.away").rename(d / "hpfs.npz")


def _remove_the_manifest(d: Path, stash: dict):
    (d / "MANIFEST.sha256").rename(d.parent / "MANIFEST.away")
    return lambda: (d.parent / "MANIFEST.away").rename(d / "MANIFEST.sha256")


def _add_an_unlisted_file(d: Path, stash: dict):
    (d / "extra.py").write_text("print('unlisted')\n")
    return lambda: (d / "extra.py").unlink()


def _move_the_directory_away(d: Path, stash: dict):
    d.rename(d.with_name("moved"))
    return lambda: d.with_name("moved").rename(d)


def _make_unreadable(d: Path, stash: dict):
    (d / "os.npz").chmod(0)
    return lambda: (d / "os.npz").chmod(0o644)


# break it (returns the repair); what the reason must say; the API's status meanwhile. While the manifest still
# reads the same, the verified model in memory keeps answering (nothing wrong is served); once the manifest itself
# is gone, model_store cannot tell which version the directory holds, and the API answers 503 as well.
BREAKAGES = [
    pytest.param(_change_a_file, "os.npz does not match its SHA-256", 200, id="a file changed"),
    pytest.param(_remove_a_file, "hpfs.npz is listed in the manifest but missing", 200, id="a file removed"),
    pytest.param(_add_an_unlisted_file, "files not in the manifest: extra.py", 200, id="an unlisted file added"),
    pytest.param(_remove_the_manifest, "no readable manifest", 503, id="the manifest removed"),
    pytest.param(_move_the_directory_away, "no readable manifest", 503, id="the directory moved away"),
]


@pytest.mark.parametrize(("breakage", "reason", "api_status"), BREAKAGES)
def test_a_broken_model_directory_makes_the_app_not_ready_until_repaired(
    breakage, reason, api_status, model_dir, tmp_path
):
    served = tmp_path / "models" / "v1"
    shutil.copytree(model_dir, served)
    client = create_app({**TEST_CONFIG, "MODEL_DIR": served}).test_client()
    assert client.get("/readyz").json == {"status": "ready", "model_version": VERSION}

    repair = breakage(served, {})
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["status"] == "not ready" and reason in ready.json["reason"]
    api = client.post(API, json=GOOD)
    assert api.status_code == api_status
    if api_status == 200:
        assert api.json["model"]["model_version"] == VERSION
        assert ready.json["serving"] == VERSION and "a restarted worker could not load it" in ready.json["reason"]
    else:
        assert api.json["errors"][0]["field"] == "model"

    repair()
    assert client.get("/readyz").json == {"status": "ready", "model_version": VERSION}
    assert client.post(API, json=GOOD).status_code == 200


# Run as a child without the capabilities that let root read any file, so that chmod 000 denies it as it would
# deny the service's own non-root user.
UNREADABLE_CHILD = """
import json, sys
from calculator import create_app
from tests.conftest import TEST_CONFIG
client = create_app({**TEST_CONFIG, "MODEL_DIR": sys.argv[1]}).test_client()
body = {"who_grade": 1, "tumor_burden": "<25%", "prior_resection_ablation": False}
for _ in range(3):
    ready = client.get("/readyz")
    answer = [ready.status_code, ready.json, client.post("/api/v1/predict", json=body).status_code]
    print("ANSWER", json.dumps(answer), flush=True)  # the app's own JSON logs share stdout
    sys.stdin.readline()
"""


def test_an_unreadable_model_file_makes_the_app_not_ready_until_readable(model_dir, tmp_path):
    served = tmp_path / "v1"
    shutil.copytree(model_dir, served)
    drop = (
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search"]
        if os.geteuid() == 0
        else []
    )
    child = subprocess.Popen(
        [*drop, sys.executable, "-c", UNREADABLE_CHILD, str(served)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def answer() -> list:
        for line in child.stdout:
            if line.startswith("ANSWER "):
                return json.loads(line[len("ANSWER ") :])
        raise AssertionError("the child ended without answering")

    def step() -> None:
        child.stdin.write("\n")
        child.stdin.flush()

    try:
        answers = [answer()]
        repair = _make_unreadable(served, {})
        step()
        answers.append(answer())
        repair()
        step()
        answers.append(answer())
        step()
    finally:
        child.stdin.close()
        child.wait(timeout=60)
        child.stdout.close()
    assert answers[0] == [200, {"status": "ready", "model_version": VERSION}, 200]
    status, body, api = answers[1]
    assert status == 503 and "os.npz cannot be read" in body["reason"] and body["serving"] == VERSION
    assert api == 200  # the verified model in memory keeps answering
    assert answers[2] == [200, {"status": "ready", "model_version": VERSION}, 200]


def test_another_version_swapped_in_place_is_what_readiness_names(model_dir, other_version, tmp_path):
    served = tmp_path / "v1"
    shutil.copytree(model_dir, served)
    client = create_app({**TEST_CONFIG, "MODEL_DIR": served}).test_client()
    assert client.get("/readyz").json["model_version"] == VERSION
    served.rename(tmp_path / "old")
    shutil.copytree(other_version, served)
    assert client.get("/readyz").json == {"status": "ready", "model_version": "other-version"}
    assert client.post(API, json=GOOD).json["model"]["model_version"] == "other-version"


def test_a_model_missing_at_start_is_picked_up_once_it_arrives(model_dir, tmp_path):
    served = tmp_path / "later"
    client = create_app({**TEST_CONFIG, "MODEL_DIR": served}).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "the model cannot be loaded" in ready.json["reason"]
    assert "no readable manifest" in ready.json["reason"]
    assert client.post(API, json=GOOD).status_code == 503
    shutil.copytree(model_dir, served)
    assert client.get("/readyz").status_code == 200
    assert client.post(API, json=GOOD).status_code == 200


def test_a_passing_check_is_trusted_for_the_configured_interval(model_dir, tmp_path):
    """Probes stay cheap: a pass is not re-hashed within READY_RECHECK_SECONDS; a failure is re-checked at once."""
    served = tmp_path / "v1"
    shutil.copytree(model_dir, served)
    app = create_app({**TEST_CONFIG, "MODEL_DIR": served, "READY_RECHECK_SECONDS": 3600})
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    (served / "os.npz").write_bytes(b"tampered")
    assert client.get("/readyz").status_code == 200  # within the interval: the last pass stands
    app.config["READY_RECHECK_SECONDS"] = 0  # as if the interval had passed
    assert client.get("/readyz").status_code == 503
    app.config["READY_RECHECK_SECONDS"] = 3600
    assert client.get("/readyz").status_code == 503  # a failure is never cached


# --- under gunicorn: a worker killed under load, and the directory breaking ----------------------------------------


class Load(threading.Thread):
    """One client sending predictions back to back, until stopped (at most ``limit`` requests or ``seconds``)."""

    def __init__(self, server: GunicornServer, limit: int = 3000, seconds: float = 60) -> None:
        super().__init__(daemon=True)
        self.server, self.limit, self.seconds = server, limit, seconds
        self.results: list[tuple[float, str]] = []  # (time, "200" or the status or the exception's type)
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and len(self.results) < self.limit and time.monotonic() < deadline:
            try:
                status, _, _ = self.server.predict(GOOD, timeout=10)
                outcome = str(status)
            except (OSError, http.client.HTTPException) as exc:  # a dropped connection
                outcome = type(exc).__name__
            self.results.append((time.monotonic(), outcome))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("gunicorn")
    served = root / "v1"
    shutil.copytree(model_dir, served)
    with GunicornServer(
        served, workers=2, log_path=root / "gunicorn.log", env={"CALCULATOR_READY_RECHECK_SECONDS": "0"}
    ) as running:
        running.served = served
        yield running


def test_a_worker_killed_under_load_is_replaced_and_requests_keep_succeeding(server):
    master = server.process.pid
    before = {w.pid for w in server.worker_processes()}
    assert len(before) == 2
    clients = [Load(server) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        deadline = time.monotonic() + 30
        while sum(len(c.results) for c in clients) < 40:
            assert time.monotonic() < deadline, "no load"
            time.sleep(0.05)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # The master notices and boots a replacement, which loads the model before it takes requests.
        server.wait_loaded(3, timeout=60)
        replaced_at = time.monotonic()
        after = {w.pid for w in server.worker_processes()}
        assert len(after) == 2 and victim not in after and after - before
        while sum(1 for c in clients for t, _ in c.results if t > replaced_at) < 100:
            assert time.monotonic() < replaced_at + 30, "load stalled after the replacement"
            time.sleep(0.05)
    finally:
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(timeout=30)
    outcomes = [(t, o) for c in clients for t, o in c.results]
    failures = [(t - killed_at, o) for t, o in outcomes if o != "200"]
    # At most the requests in flight on the killed worker fail (one per client), as a dropped connection, never
    # as an HTTP error; everything after the kill's moment succeeds.
    assert len(failures) <= len(clients), failures
    assert all(not o.isdigit() for _, o in failures), failures
    assert all(o == "200" for t, o in outcomes if t > killed_at + 1.0)
    assert server.process.pid == master and server.process.poll() is None
    assert any(f"Worker (pid:{victim})" in r.get("message", "") for r in server.records())
    print(
        f"{len(outcomes)} requests, {len(failures)} dropped at the kill: {failures}; replacement loaded "
        f"{replaced_at - killed_at:.1f} s after it"
    )


def test_under_gunicorn_a_broken_directory_is_not_ready_on_every_worker_and_recovers(server):
    assert server.request("GET", "/readyz")[0] == 200
    away = server.served.parent / "hpfs.away"
    (server.served / "hpfs.npz").rename(away)
    try:
        probes = [server.request("GET", "/readyz") for _ in range(8)]  # both workers answer some of them
        assert all(status == 503 for status, _, _ in probes)
        reasons = {json.loads(body)["reason"] for _, _, body in probes}
        assert all("hpfs.npz is listed in the manifest but missing" in r for r in reasons)
        assert all(server.predict(GOOD)[0] == 200 for _ in range(4))
    finally:
        away.rename(server.served / "hpfs.npz")
    assert all(server.request("GET", "/readyz")[0] == 200 for _ in range(8))

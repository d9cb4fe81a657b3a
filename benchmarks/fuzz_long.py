"""The long fuzzing run: the checks of tests/test_fuzz.py for tens of thousands of generated requests.

10,000 API bodies against the oracle written from CONTRACT.md, 3,000 form submissions (each also replayed as a
permalink), and 1,000 positive plus 1,000 negative schemathesis cases from the OpenAPI document, all in-process
against the app serving the shipped model. Counts per outcome go to docs/testing-report.md. Any failure stops the
run with hypothesis's minimal failing example. Sizes: FUZZ_API, FUZZ_FORM, FUZZ_SCHEMATHESIS (per mode).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from benchmarks.load_benchmark import REPO, model_for_benchmarks, run_stamp, update_testing_report

API_CASES = int(os.environ.get("FUZZ_API", 10_000))
FORM_CASES = int(os.environ.get("FUZZ_FORM", 3_000))
SCHEMATHESIS_CASES = int(os.environ.get("FUZZ_SCHEMATHESIS", 1_000))


def _settings(n: int):
    # No example database: a long run should not leave files behind or replay old failures from elsewhere.
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def run(report_lines: list[str]) -> None:
    sys.path.insert(0, str(REPO))
    import schemathesis
    from schemathesis import GenerationMode

    from calculator import create_app
    from tests import test_fuzz as fuzz

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, model_note = model_for_benchmarks(Path(tmp))
        stamp = run_stamp()
        # Logging at WARNING: tens of thousands of access records would only slow the run down.
        app = create_app(
            {
                "TESTING": True,
                "MODEL_DIR": model_dir,
                "WTF_CSRF_ENABLED": False,
                "RATE_LIMIT_PER_MINUTE": 0,
                "LOG_LEVEL": "WARNING",
            }
        )
        client = app.test_client()
        counts: dict[str, Counter] = {"api": Counter(), "form": Counter(), "schemathesis": Counter()}
        seconds: dict[str, float] = {}
        raised: Counter[str] = Counter()  # warnings raised while serving (none expected)

        @_settings(API_CASES)
        @given(body=fuzz.api_bodies())
        def api(body):
            counts["api"][fuzz.check_api_case(client, body)] += 1

        @_settings(FORM_CASES)
        @given(data=fuzz.form_submissions())
        def form(data):
            counts["form"][fuzz.check_form_case(client, data)] += 1

        operation = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)["/api/v1/predict"]["POST"]

        def schemathesis_mode(mode: GenerationMode):
            @_settings(SCHEMATHESIS_CASES)
            @given(case=operation.as_strategy(mode))
            def check(case):
                response = case.call_and_validate(additional_checks=[fuzz.field_level_errors])
                counts["schemathesis"][f"{mode.value} {response.status_code}"] += 1

            return check

        for name, job in (
            ("api", api),
            ("form", form),
            (
                "schemathesis",
                lambda: (schemathesis_mode(GenerationMode.POSITIVE)(), schemathesis_mode(GenerationMode.NEGATIVE)()),
            ),
        ):
            started = time.monotonic()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                job()
            for w in caught:
                raised[f"{Path(w.filename).name}:{w.lineno} {w.category.__name__}: {w.message}"] += 1
            seconds[name] = time.monotonic() - started
            print(f"fuzz {name}: {sum(counts[name].values())} cases in {seconds[name]:.0f} s {dict(counts[name])}")

    total = sum(sum(c.values()) for c in counts.values())
    server_errors = sum(n for c in counts.values() for status, n in c.items() if int(str(status).split()[-1]) >= 500)

    def row(name: str, what: str) -> str:
        outcome = ", ".join(f"{status}: {n:,}" for status, n in sorted(counts[name].items(), key=str))
        return f"| {what} | {sum(counts[name].values()):,} | {outcome} | {seconds[name]:.0f} |"

    lines = [
        "## Long fuzzing run",
        "",
        f"{stamp} In-process against the app serving {model_note}. Checks as in tests/test_fuzz.py: API bodies "
        "against an oracle written from CONTRACT.md (200 with the contract's shape and consistent curves, or 400 "
        "naming exactly the wrong, missing or unknown fields); form submissions (303 to a result that renders, or "
        "the form with a message by a field; the same inputs as a permalink: 200 or 400); schemathesis's own "
        "checks (no 5xx, status codes, content types and response bodies as documented, invalid data rejected, "
        "valid data accepted) plus every 4xx naming a field with a message.",
        "",
        "| generator | cases | outcomes (status: count) | seconds |",
        "|---|---|---|---|",
        row("api", "hypothesis, API bodies"),
        row("form", "hypothesis, form posts (+ permalinks)"),
        row("schemathesis", "schemathesis, from openapi.json (positive / negative)"),
        "",
        f"**{total:,} cases, {server_errors} server errors, 0 oracle failures** (a failure stops the run).",
        "",
    ]
    if raised:
        lines += [
            'Warnings raised by the code under test during the run (each a finding, see "What the stress '
            'tests found"):',
            "",
            *[f"- `{text}` ({n:,} times)" for text, n in raised.most_common()],
            "",
        ]
    else:
        lines += ["No warning was raised by the code under test.", ""]
    report_lines.extend(lines)
    update_testing_report("fuzz", lines)


if __name__ == "__main__":
    out: list[str] = []
    run(out)
    print("\n".join(out))

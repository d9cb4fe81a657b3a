"""What the browser tests share: the app on a real server on 127.0.0.1, Debian's Chromium through Playwright, pages
whose console errors and requests are watched, screenshots, printed pages and axe-core.

Each test module makes its fixtures from these (``served``, ``chromium``, ``watching``); see tests/test_browser.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from calculator import create_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best practices (reported, but only serious and critical
# violations fail a test).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]
FAILING_IMPACTS = ("serious", "critical")


class _QuietHandler(WSGIRequestHandler):
    """The development server's access log would print query strings, i.e. patient inputs."""

    def log_request(self, *args, **kwargs) -> None:
        pass


@contextmanager
def served(model_dir) -> Iterator[str]:
    """The app serving ``model_dir`` on a free port of 127.0.0.1: its base URL."""
    app = create_app({"MODEL_DIR": model_dir})
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless (the test is skipped where it is not installed)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page whose console errors, uncaught exceptions and requested URLs are recorded."""

    def __init__(self, browser, base_url: str, **context_options) -> None:
        self.base_url = base_url
        options = {"viewport": {"width": 1280, "height": 900}, **context_options}
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def check_clean(self) -> None:
        assert self.errors == []
        elsewhere = [url for url in self.requests if not url.startswith(self.base_url + "/")]
        assert elsewhere == [], "requests left the machine"
        self.context.close()


def watching(browser, base_url: str) -> Iterator[Callable[..., Watched]]:
    """For a ``watched`` fixture: opens watched pages, and checks each when the test ends."""
    pages: list[Watched] = []

    def open_page(**options) -> Watched:
        pages.append(Watched(browser, base_url, **options))
        return pages[-1]

    yield open_page
    for page in pages:
        page.check_clean()


# The fixtures of a browser test module (import them into it): the app on a free port, one Chromium for the
# module, and pages checked for console errors and requests off the machine when each test ends.


@pytest.fixture(scope="module")
def base_url(model_dir) -> Iterator[str]:
    with served(model_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def watched(browser, base_url) -> Iterator[Callable[..., Watched]]:
    yield from watching(browser, base_url)


def shot(page, name: str, **options) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, **options)
    return path


def printed_pages(page, name: str, paper: str = "A4") -> int:
    """Print the page to a PDF on ``paper`` (A4 or Letter; the print stylesheet's margins) and count its pages."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.emulate_media(media="print")
    pdf = page.pdf(path=str(ARTIFACTS / f"{name}.pdf"), format=paper, print_background=True)
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


def axe_violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now (axe-core from the axe-playwright-python package: nothing
    is fetched), WCAG 2.2 A and AA and best practices."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    return results.response["violations"]


def describe(violations: list[dict]) -> str:
    """The violations as a readable report: rule, impact, help and each offending element."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} [{v['helpUrl']}]")
        for node in v["nodes"]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:200]}")
            if node.get("failureSummary"):
                lines.append("      " + node["failureSummary"].replace("\n", "\n      "))
    return "\n".join(lines)

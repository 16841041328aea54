"""The report page in a real headless Chromium (Debian's ``chromium`` package;
``.ci/run`` installs it): it loads with no console error and no request,
every figure is drawn at a non-zero size, and a row whose text is a script
shows as text and runs nothing."""

from __future__ import annotations

import json

import pytest

from skdeita.report import write_report

from ._chromium import Chromium, find_chromium
from .conftest import SCRIPT

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

FIGURES = """JSON.stringify(Array.from(document.querySelectorAll('figure')).map(f => {
  const el = f.querySelector('svg, img');
  const r = el ? el.getBoundingClientRect() : {width: 0, height: 0};
  return [f.id, r.width, r.height];
}))"""


@pytest.fixture
def browser(tmp_path):
    chromium = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        yield chromium
    finally:
        chromium.close()


def test_report_renders_offline_with_no_error_and_shows_scripts_as_text(
    annotated, tmp_path, browser
):
    manifest = {"skdeita_manifest": 1, "command": ["skdeita", "select", SCRIPT]}
    page = write_report(
        annotated,
        tmp_path / "report.html",
        manifest=manifest,
        data_budget=120,
        diversity_threshold=0.1,
    )
    url = page.resolve().as_uri()
    browser.open(url)

    assert browser.console_errors() == []
    assert browser.requests() == [url]  # the page itself, nothing else

    figures = json.loads(browser.evaluate(FIGURES))
    names = [name for name, _, _ in figures]
    assert names == [
        "fig-outcomes",
        "fig-score-complexity",
        "fig-score-quality",
        "fig-score-deita-score",
        "fig-threshold",
        "fig-map",
    ]
    for name, width, height in figures:
        assert width > 0 and height > 0, name

    text = browser.evaluate("document.body.innerText")
    assert text.count(SCRIPT) == 2  # the blocked row's text, and the manifest
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.scripts.length") == 0
    # Readable on a laptop: no sideways scrolling at 1366 px.
    width, inner = browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner
    browser.screenshot(tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_harness_sees_errors_scripts_and_requests(tmp_path, browser):
    """The checks above can fail: a page that logs an error, runs a script and
    requests an image is caught on each count."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><figure><svg width='0' height='0'></svg></figure>"
        "<script>window.__pwned = 1; console.error('boom')</script>"
        "<img src='http://127.0.0.1:9/x.png'></body></html>"
    )
    url = bad.resolve().as_uri()
    browser.open(url)
    assert any("boom" in e for e in browser.console_errors())
    assert "http://127.0.0.1:9/x.png" in browser.requests()
    assert browser.evaluate("typeof window.__pwned") == "number"
    assert json.loads(browser.evaluate(FIGURES)) == [["", 0, 0]]

"""The web pages in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Screenshots go to ``test-artifacts/screenshots/`` at the repository root. Install the
browser with ``scripts/install-chromium.sh``; never a browser Playwright downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Headless on a machine with a closed network: without the background-networking flags
# Chromium keeps trying to reach Google's hosts.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        msg = ("/usr/bin/chromium is missing; install Debian's chromium with"
               " scripts/install-chromium.sh")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_models_to_version_curves_verify_and_phone(served, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Sign in, then the models list.
    page.goto(served.url + "/")
    assert "/login" in page.url
    page.fill("#token", served.tokens["reader"])
    page.click("#sign-in")
    page.wait_for_selector("table#models")
    assert page.locator("a.model-link").all_inner_texts() == ["distill", "lora", "teacher"]
    page.screenshot(path=str(SHOTS / "01-models.png"), full_page=True)

    # Follow a model; its metric chart is drawn.
    page.click("a.model-link >> text=distill")
    page.wait_for_selector("svg.metric-chart polyline.series")
    page.select_option("#metric", "f1")  # the inline script submits on change
    page.wait_for_url("**metric=f1")
    assert page.locator("svg.metric-chart").get_attribute("aria-label") == \
        "f1 across versions of distill"
    page.screenshot(path=str(SHOTS / "02-model.png"), full_page=True)

    # Follow a version; the training curves are rendered, with visible size.
    page.click("a.version-link >> text=1.1.0")
    page.wait_for_selector("#training-curves svg.curve polyline.series")
    curves = page.locator("#training-curves svg.curve")
    assert curves.count() == 2
    box = curves.first.bounding_box()
    assert box and box["width"] > 250 and box["height"] > 100
    assert page.locator("#training-curves polyline.series").count() == 3  # loss, val_loss, acc
    # The attached chart image loaded; the lineage graph is drawn.
    page.wait_for_function(
        "() => { const i = document.querySelector('#charts img');"
        " return i && i.complete && i.naturalWidth > 0; }")
    assert page.locator("#lineage svg a.node").count() == 2
    # Nothing from the report ran.
    assert page.evaluate("window.__pwned") is None
    assert page.locator("article.report script").count() == 0

    # Verify now.
    page.click("#verify-now")
    page.wait_for_selector("#verify-result")
    result = page.inner_text("#verify-result")
    assert result.startswith("OK") and "4 files" in result
    page.screenshot(path=str(SHOTS / "03-version-verified.png"), full_page=True)

    # A phone: nothing wider than the screen, tables stacked as cards.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    assert page.locator("#files thead").is_hidden()
    assert page.locator("#training-curves svg.curve").first.bounding_box()["width"] <= 390
    page.screenshot(path=str(SHOTS / "04-version-phone.png"), full_page=True)
    page.goto(served.url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(SHOTS / "05-models-phone.png"), full_page=True)
    assert not [e for e in errors if "Content Security Policy" in e or "Uncaught" in e], errors

"""The search page in headless Chromium (Debian's, driven by Playwright): a typed query, the grid, "more like
this", the modality filters, the min-score slider, an uploaded image, and a video that starts at its segment."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("playwright")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def page(live_server):
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium on this machine")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-default-apps", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live_server.url + "/")
        yield page
        browser.close()
        assert not errors, errors


def cards(page) -> list[dict]:
    return page.eval_on_selector_all(".hit", """els => els.map(e => ({
        id: e.dataset.id, score: parseFloat(e.dataset.score), modality: e.dataset.modality,
        name: e.querySelector('.name').textContent}))""")


def search(page, text: str) -> list[dict]:
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelector('#status').textContent.includes('result')")
    return cards(page)


def test_search_page(page, server_media, tmp_path):
    page.wait_for_function("document.querySelector('#collection').textContent.includes('14 items')")

    hits = search(page, "a red shape")
    assert [h["name"].split("-")[0] for h in hits[:2]] == ["red", "red"], hits
    # Every thumbnail arrives (served by the thumbnail route, through the session).
    page.wait_for_function("[...document.querySelectorAll('.hit img')].slice(0, 4).every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_function("[...document.querySelectorAll('.hit video')].every(v => v.readyState >= 1)")
    shot = tmp_path / "screenshot-search.png"
    page.screenshot(path=str(shot), full_page=False)
    if os.environ.get("OMNIVEC_UPDATE_SCREENSHOT"):
        shutil.copy(shot, DOCS / "screenshot-search.png")

    # More like this: the clicked item leaves the results, its colour leads them. The first image hit is clicked:
    # the red-then-blue video can rank first too (a near tie with the red images whose order depends on the CPU
    # the model was trained on), and its own nearest neighbour is rightly purple, between its red and its blue.
    first = next(h for h in hits if h["modality"] == "image")
    page.click(f".hit[data-id='{first['id']}'] .more")
    page.wait_for_function("document.querySelector('#query-chips').textContent.includes('like')")
    page.wait_for_function(f"!document.querySelector(\".hit[data-id='{first['id']}']\")")
    like = cards(page)
    assert like and like[0]["name"].startswith("red-"), like
    page.click("#query-chips button")  # clear "like"

    # The min-score slider: only hits at or above it remain.
    hits = search(page, "a red shape")
    cut = round((hits[2]["score"] + hits[3]["score"]) / 2, 2)
    page.eval_on_selector("#min-score", f"(el) => {{ el.value = '{cut}'; el.dispatchEvent(new Event('input')); }}")
    page.wait_for_function(f"document.querySelectorAll('.hit').length < {len(hits)}")
    page.wait_for_function("document.querySelector('#status').textContent.includes('result')")
    kept = cards(page)
    assert kept and all(h["score"] >= cut for h in kept) and len(kept) <= 3
    page.eval_on_selector("#min-score", "(el) => { el.value = el.min; el.dispatchEvent(new Event('input')); }")

    # Modality filters: videos only; the player starts at the matching segment.
    page.uncheck("input.modality[value='image']")
    page.wait_for_function("[...document.querySelectorAll('.hit')].every(e => e.dataset.modality === 'video')")
    hits = search(page, "a picture of a blue square")
    assert hits[0]["name"] == "red-circle-then-blue-square.mp4"
    src = page.eval_on_selector(".hit video", "v => v.getAttribute('src')")
    assert src.endswith("#t=5,9"), src
    # Chromium decodes the H.264 stream (through HTTP range requests) and the player sits at 5 s.
    page.wait_for_function("document.querySelector('.hit video').readyState >= 1")
    assert page.eval_on_selector(".hit video", "v => v.currentTime") == pytest.approx(5.0, abs=0.3)
    page.check("input.modality[value='image']")

    # An uploaded image as the query.
    page.fill("#q", "")
    page.set_input_files("#file", str(server_media / "images" / "blue-square-1.png"))
    page.wait_for_function("document.querySelector('#query-chips').textContent.includes('blue-square-1.png')")
    page.wait_for_function("document.querySelector('.hit .name')?.textContent === 'blue-square-1.png'")
    assert "blue" in cards(page)[1]["name"]  # the other blue square, or the video segment showing one

"""The review page in a real browser: headless Chromium (Debian's) driven by Playwright.

Loads the page of a tiny synthetic run, steps frames (the image changes), plays, jumps to
the next bout and the next disagreement, moves a bout's end, saves, and checks the saved
label file holds exactly that edit; a second tab's stale save is refused and the page
says to reload. Without Chromium the test is skipped, except in CI (``CI=true``), where
that fails. ``REVIEW_SCREENSHOT=docs/review.png`` also saves a screenshot of the page.
"""

import json
import os

import numpy as np
import pytest

from mouse_pipeline.annotations import read_labels
from mouse_pipeline.metrics import bouts_from_binary
from mouse_pipeline.review.server import ReviewServer, open_session
from tests.integration.review_run import (
    BEHAVIORS,
    CHROMIUM_ARGS,
    UNANNOTATED,
    ReviewRun,
    chromium_or_skip,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    executable = chromium_or_skip()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI=true but playwright is not installed (the dev extra has it)")
        pytest.skip("playwright is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("review_browser")
    data = ReviewRun(root)
    out = root / "reviewed"
    queue = root / "suggestions.csv"
    queue.write_text("rank,video,start_frame,end_frame,start_s,end_s,score,why\n"  # suggest's columns
                     f"1,{data.ids[1]},50,60,5.0,6.1,0.91,near_threshold:grooming\n")
    session = open_session(data.run, out=out, queue=queue, user="browser-test")
    server = ReviewServer(session).start()
    yield data, server, out
    server.stop()


def frame_of(page):
    return int(page.get_attribute("#frame", "data-frame"))


def wait_frame(page, index):
    page.wait_for_function(f"document.getElementById('frame').dataset.frame === '{index}'", timeout=10_000)


def image_bytes(page):
    return page.evaluate("""async () => {
        const r = await fetch(document.getElementById('frame').src);
        return Array.from(new Uint8Array(await r.arrayBuffer()));
    }""")


def test_step_jump_edit_save_in_a_real_browser(browser, served):
    data, server, out = served
    vid = data.ids[0]
    errors = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("#bouts li")
    assert page.input_value("#video") == vid
    other = browser.new_page()  # a second tab on the same video, loaded before any save
    other.goto(server.url)
    other.wait_for_selector("#bouts li")

    # stepping: the frame shown changes, and so does the image
    wait_frame(page, 0)
    first = image_bytes(page)
    page.keyboard.press("ArrowRight")
    wait_frame(page, 1)
    assert image_bytes(page) != first and first[:2] == [0xFF, 0xD8]
    page.keyboard.press("ArrowLeft")
    wait_frame(page, 0)

    # playback moves on by itself; space stops it
    page.keyboard.press(" ")
    page.wait_for_function("+document.getElementById('frame').dataset.frame >= 3", timeout=10_000)
    page.keyboard.press(" ")

    # next disagreement (prediction vs annotation): past the stretch the cursor is in
    page.locator("#scrub").fill("0")
    wait_frame(page, 0)
    truth = data.truth[vid]
    differs = ((server.session.videos[vid].predictions.binary != truth) & (truth != -1)).any(axis=1)
    i = 0
    while i < len(differs) and differs[i]:
        i += 1
    later = np.flatnonzero(differs[i:])
    assert later.size, "the synthetic run should have a disagreement to jump to"
    page.keyboard.press("d")
    wait_frame(page, i + int(later[0]))

    # next bout from the start: the first labelled bout
    page.locator("#scrub").fill("0")
    wait_frame(page, 0)
    bouts = sorted((s, e, j) for j in range(len(BEHAVIORS)) for s, e in bouts_from_binary(data.truth[vid][:, j]))
    bouts = [b for b in bouts if b[0] > 0]
    start, end, j = bouts[0]
    page.keyboard.press("n")
    wait_frame(page, start)
    assert f"{BEHAVIORS[j]} {start}" in page.inner_text("#selected")

    # move its end 3 frames later, then save
    page.fill("#b-end", str(end + 3))
    page.click("#b-apply")
    assert "1 unsaved" not in page.inner_text("#status") and "unsaved" in page.inner_text("#status")
    page.click("#save")
    page.wait_for_selector("#banner.ok", timeout=10_000)
    assert "saved to" in page.inner_text("#banner")

    expected_labels = data.truth[vid].copy()
    expected_labels[end + 1:end + 4, j] = 1
    saved = read_labels(out / f"{vid}.csv", "thesis", BEHAVIORS).matrix
    assert (saved == expected_labels).all()  # exactly that edit, nothing else
    assert int((saved != data.truth[vid]).sum()) == int((data.truth[vid][end + 1:end + 4, j] != 1).sum())

    # the other tab's save is stale: refused, and the page says to reload
    other.keyboard.press("n")
    other.wait_for_function("document.getElementById('b-start').value !== ''", timeout=10_000)
    other.click("#b-delete")
    other.click("#save")
    other.wait_for_selector("#banner:not([hidden])", timeout=10_000)
    assert "reload" in other.inner_text("#banner")
    assert (read_labels(out / f"{vid}.csv", "thesis", BEHAVIORS).matrix == expected_labels).all()

    # the review queue: a suggestion opens its video at its start, its stretch marked
    page.click("#queue li")
    page.wait_for_function(f"document.getElementById('video').value === '{data.ids[1]}'", timeout=10_000)
    wait_frame(page, 50)
    assert page.inner_text("#range") == "in 50 \u2013 out 60"

    # keys: r marks the queue's stretch reviewed; i / o / a add a bout where nothing was
    # annotated, r marks that stretch reviewed too; Ctrl+S saves
    second = data.ids[1]
    page.keyboard.press("r")
    page.locator("#scrub").fill("2")
    wait_frame(page, 2)
    page.keyboard.press("i")
    page.keyboard.press("Shift+ArrowRight")  # 10 frames on, then 6 back
    for _ in range(6):
        page.keyboard.press("ArrowLeft")
    wait_frame(page, 6)
    page.keyboard.press("o")
    page.select_option("#add-behavior", "mid_rearing")
    page.locator("#frame").click()  # the page, not the select, takes the next keys
    page.keyboard.press("a")
    page.keyboard.press("r")
    page.keyboard.press("Control+s")
    page.wait_for_selector("#banner.ok", timeout=10_000)
    expected_second = data.truth[second].copy()
    expected_second[2:7][expected_second[2:7] == -1] = 0
    expected_second[2:7, BEHAVIORS.index("mid_rearing")] = 1
    saved = read_labels(out / f"{second}.csv", "thesis", BEHAVIORS).matrix
    assert (saved == expected_second).all()
    assert (saved[7:UNANNOTATED] == -1).all()  # not reviewed: still not annotated
    record = json.loads((out / f"{second}.review.json").read_text())
    assert record["reviewed"] == [[2, 6], [50, 60]] and record["history"][-1]["user"] == "browser-test"

    shot = os.environ.get("REVIEW_SCREENSHOT")
    if shot:
        page.keyboard.press("p")
        page.wait_for_timeout(300)
        page.screenshot(path=shot, full_page=True)
    assert errors == []
    other.close()
    page.close()

"""`gmdrit app` in a real browser: the page served on 127.0.0.1 and driven in headless Chromium.

Uploads an embedded test apple, presses Translate and waits for the 5 output images to load in the gallery
(decoded by the browser, every one with the model's size); then uploads a text file: the page shows the
message and a second translate of the apple still works. Also the request function itself on odd uploads
(grey, animated, huge, empty) and the one-line message of `gmdrit app` without Gradio.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from chromium_page import Chromium, find_chromium
from PIL import Image

from conftest import free_port, run_gmdrit

if importlib.util.find_spec("gradio") is None:  # found, not imported: that takes seconds
    pytest.skip("the app extra: pip install 'gmdrit[app]'", allow_module_level=True)

from chromium_app import LivePage  # noqa: E402

from gmdrit_cli.inference.webapp import (  # noqa: E402
    MAX_UPLOAD_PIXELS,
    MODE_RANDOM,
    Request,
    check_upload,
    example_images,
    load_app_model,
    run_request,
)

CHROMIUM = find_chromium()
APPLE = example_images()[0]
SCREENSHOT = os.environ.get("GMDRIT_APP_SCREENSHOT")  # set to write the README's screenshot


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`gmdrit app` (the pretrained model) in its own process on a free port; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:  # into a file, not a pipe (start_gmdrit): nobody reads a server's output meanwhile
        proc = subprocess.Popen(
            [sys.executable, "-m", "gmdrit_cli", "app", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 600  # an upper bound: Gradio's import alone is seconds on a busy machine
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gmdrit app did not serve {url}: {log.read_text()}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


LOADED_OUTPUTS = (
    "Array.from(document.querySelectorAll('#outputs img'))"
    ".filter(i => i.complete && i.naturalWidth > 0).map(i => [i.naturalWidth, i.naturalHeight])"
)
OUTPUT_SOURCES = "Array.from(document.querySelectorAll('#outputs img')).map(i => i.getAttribute('src'))"
STATUS = "document.querySelector('#status') ? document.querySelector('#status').innerText : ''"


def clear_upload(page: LivePage) -> None:
    """Press the upload field's clear button (a file field shows the file instead of its input while it has one)."""
    page.eval(
        "(() => { const bs = Array.from(document.querySelectorAll('#input-image button'));"
        " const b = bs.find(b => /clear|remove/i.test((b.getAttribute('aria-label') || '') + (b.title || '')))"
        " || bs[0]; b.click(); return true; })()"
    )
    page.wait("document.querySelector('#input-image input[type=file]') !== null", 300, "the emptied upload field")


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium); .ci/run installs it"
)
def test_the_page_translates_and_survives_a_bad_upload(server, tmp_path):
    with Chromium(CHROMIUM, width=1280, height=1000, timeout=300) as browser:
        page = LivePage(browser, server)
        page.wait("document.querySelector('#input-image input[type=file]') !== null", 300, "the upload field")
        # 1. the apple, the default 5 samples
        page.set_files("#input-image input[type=file]", [APPLE])
        page.wait(f"({STATUS}).includes('ready')", 300, "the upload to be checked")
        page.click("#translate")
        sizes = page.wait(
            f"(() => {{ const s = {LOADED_OUTPUTS}; return s.length === 5 ? s : null; }})()", 300, "5 output images"
        )
        assert sizes == [[128, 128]] * 5  # the pretrained model's working size, square for a square input
        assert "translated into" in page.eval(STATUS)
        first = set(page.eval(OUTPUT_SOURCES))
        assert len(first) == 5
        if SCREENSHOT:
            page.screenshot(Path(SCREENSHOT))
        # 2. a text file: a message in the page, no outputs from it
        text = tmp_path / "notes.jpg"
        text.write_text("not an image at all\n")
        clear_upload(page)
        page.set_files("#input-image input[type=file]", [text])
        page.wait(f"({STATUS}).includes('not an image')", 300, "the bad-upload message")
        page.click("#translate")
        message = page.wait(
            f"(() => {{ const t = {STATUS}; return t.includes('error') ? t : null; }})()",
            300,
            "the error after translate",
        )
        assert "not an image" in message
        # 3. the server still serves: the apple again, 5 new outputs
        clear_upload(page)
        page.set_files("#input-image input[type=file]", [APPLE])
        page.wait(f"({STATUS}).includes('ready')", 300, "the second upload")
        page.click("#translate")
        page.wait(f"({STATUS}).includes('translated into')", 300, "the second translation")
        # 5 loaded outputs of the new request (each request writes into its own folder: new addresses)
        fresh = page.wait(
            f"(() => {{ const s = {OUTPUT_SOURCES}; const l = {LOADED_OUTPUTS};"
            f" return l.length === 5 && s.length === 5 && s.every(x => !{sorted(first)!r}.includes(x))"
            " ? s : null; })()",
            300,
            "5 new output images",
        )
        assert len(set(fresh)) == 5
        page.close()


@pytest.fixture(scope="module")
def pretrained():
    return load_app_model(None)


def test_requests_on_odd_uploads(pretrained, tmp_path):
    def ask(path, **kw):
        return run_request(
            pretrained,
            Request(str(path) if path else None, "orange", MODE_RANDOM, samples=2, seed=1, randomize=False, **kw),
            tmp_path,
        )

    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((40, 50), 120, np.uint8), "L").save(grey)
    r = ask(grey)
    assert r.ok and len(r.images) == 2 and "greyscale" in r.message
    frames = [Image.new("RGB", (30, 30), c) for c in ("red", "blue", "green")]
    gif = tmp_path / "moving.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    r = ask(gif)
    assert r.ok and "animated (3 frames)" in r.message
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert not ask(empty).ok and "empty file" in ask(empty).message
    assert "upload the image first" in ask(None).message
    r = ask(APPLE)
    assert r.ok and r.seed == 1 and len(r.files) == 3  # 2 samples and the grid
    # the same seed gives the same pictures
    again = ask(APPLE)
    assert Path(again.images[0][0]).read_bytes() == Path(r.images[0][0]).read_bytes()


def test_a_huge_upload_is_refused_by_its_header(tmp_path):
    side = int(MAX_UPLOAD_PIXELS**0.5) + 10
    huge = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(huge)  # 1-bit: a small file with a huge header size
    with pytest.raises(Exception) as info:
        check_upload(huge)
    assert "MP" in str(info.value) and "scale it down" in str(info.value)


def test_app_without_gradio_says_how_to_install(tmp_path):
    # a sitecustomize that hides Gradio from importlib (as an environment without the extra)
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import importlib.util\n_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a, **k: None if name == 'gradio' else _find(name, *a, **k)\n"
    )
    # a process of its own: the blocker must be in place when the interpreter starts, and were Gradio found anyway,
    # the server `gmdrit app` starts would block this process instead of failing the test after 60 s
    proc = run_gmdrit(
        "app", env={"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}, timeout=60
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: gmdrit app needs Gradio: pip install 'gmdrit[app]'"], proc.stderr

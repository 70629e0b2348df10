"""Sixteenth probe (the web app's API, data archives, torchrun variables): what a careless user broke.

`gmdrit app` serves a Gradio page whose API (`/gradio_api/call/on_translate`, listed at `/gradio_api/info` and
used by `gradio_client` or curl) takes the same fields as the page. A request whose number field holds text
(`"samples": "abc"`), whose slider is null, or that sends fewer values than the handler takes is refused to the
client, but the terminal that runs `gmdrit app` shows a 30-line Python traceback for each such request
(gradio's TypeError / ComponentProcessingError / ValueError, printed by its queue). A malformed request is a user
error of the client: the app may log one line, never a traceback.
"""

from __future__ import annotations

import signal
import time

import httpx

from conftest import free_port, input_image, start_gmdrit


def _wait_serving(url: str, proc, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("gmdrit app did not start serving")


def _call(api: str, data: list) -> str:
    """POST one on_translate request and read its event stream to the end."""
    posted = httpx.post(f"{api}/call/on_translate", json={"data": data}, timeout=60)
    posted.raise_for_status()
    event = posted.json()["event_id"]
    return httpx.get(f"{api}/call/on_translate/{event}", timeout=120).text


def test_an_app_api_request_with_text_in_a_number_field_prints_no_traceback(run_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    api = url + "gradio_api"
    proc = start_gmdrit("app", "--run", run_dir, "--port", port)
    try:
        _wait_serving(url, proc)
        uploaded = httpx.post(
            f"{api}/upload", files={"files": open(input_image(run_dir.parent / "data"), "rb")}, timeout=30
        ).json()[0]
        image = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
        good = [image, "orange", "random attributes", 2, 1.0, 0, 0, False, None, False, 8, False]
        bad_samples = list(good)
        bad_samples[3] = "abc"  # text in the number-of-samples slider
        assert "error" in _call(api, bad_samples)
        short = good[:3]  # fewer values than the handler takes
        assert "error" in _call(api, short)
        assert "complete" in _call(api, good)  # the app still serves
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert "Traceback" not in out + err, (out + err)[-3000:]

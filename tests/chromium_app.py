"""Drive a live web page in headless Chromium (test helper): navigate, run JavaScript, wait for a condition,
give a file input files, take a screenshot. Built on :class:`chromium_page.Chromium` (the DevTools protocol
over pipes)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from chromium_page import Chromium, ChromiumError


class LivePage:
    """One tab of ``browser`` on ``url``; ``page.eval(js)`` returns the value of a JavaScript expression."""

    def __init__(self, browser: Chromium, url: str):
        self.browser = browser
        self.target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": self.target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "DOM"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": browser.width, "height": browser.height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})
        browser.wait_for("Page.loadEventFired", self.session)

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def eval(self, expression: str):
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise ChromiumError(f"{expression[:80]}: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def wait(self, expression: str, timeout: float = 60.0, what: str = ""):
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise ChromiumError(f"timed out waiting for {what or expression[:80]}")
            time.sleep(0.25)

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Give the ``<input type=file>`` at ``selector`` these files, as a user choosing them would."""
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise ChromiumError(f"no element matches {selector}")
        self.send("DOM.setFileInputFiles", {"files": [str(Path(p).resolve()) for p in paths], "nodeId": node})

    def click(self, selector: str) -> None:
        if not self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "if (!e) return false; e.click(); return true; })()"
        ):
            raise ChromiumError(f"no element matches {selector}")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))
        return Path(path)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

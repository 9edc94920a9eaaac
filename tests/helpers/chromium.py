"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``): no web socket,
no Python dependency. Commands go to the browser's fd 3 and replies come from its fd 4, as NUL-terminated JSON."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

WAIT_S = 60.0  # the longest any one reply or condition is waited for; a slow machine only takes longer to pass


def _above(fd: int, lowest: int) -> int:
    """``fd`` moved to a number of at least ``lowest``."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page; every console error and uncaught exception is kept in ``errors``."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise RuntimeError("chromium not found: install Debian's chromium package, as .ci/run does")
        self.profile = tempfile.TemporaryDirectory(prefix="imitate-chromium-")
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()
        # above 4, so that the shell's "3<&A 4>&B" never overwrites one end before it is handed on
        to_browser, from_browser = (_above(fd, 10) for fd in (to_browser, from_browser))

        # bash (dash takes one-digit fds only) hands the pipe ends to the browser as the protocol's fds 3 and 4
        wire = f'exec "$@" 3<&{to_browser} 4>&{from_browser}'
        self.process = subprocess.Popen(
            ["bash", "-c", wire, "bash", binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", "--no-first-run", f"--user-data-dir={self.profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.errors: list[str] = []
        page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", page=True)
        self.send("Emulation.setDeviceMetricsOverride", page=True, width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._out], [], [], WAIT_S)
            chunk = os.read(self._out, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("chromium closed the protocol pipe or sent nothing")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        self._note(message)
        return message

    def _note(self, message: dict[str, Any]) -> None:
        """Keep the page's errors: uncaught exceptions, console.error and error log entries."""
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")

    def send(self, method: str, page: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command (to the page's session if ``page``) and return its result."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params}
        if page:
            command["sessionId"] = self.session
        os.write(self._in, json.dumps(command).encode() + b"\0")
        while True:
            message = self._message()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str, context: int | None = None) -> Any:
        """The value of a JavaScript expression in the page (or in the execution ``context``)."""
        extra = {"contextId": context} if context is not None else {}
        result = self.send("Runtime.evaluate", page=True, expression=expression, returnByValue=True,
                           awaitPromise=True, **extra)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, context: int | None = None) -> Any:
        """Poll ``expression`` until it is truthy; its value, or TimeoutError after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while not (value := self.evaluate(expression, context)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {WAIT_S:.0f} s: {expression}")
            time.sleep(0.2)
        return value

    def open(self, path: Path) -> None:
        """Load a local file and wait for its load event."""
        self.send("Page.navigate", page=True, url=Path(path).resolve().as_uri())
        self.wait_for("document.readyState === 'complete'")

    def frame_context(self, url_part: str) -> int:
        """An execution context in the child frame whose URL contains ``url_part``, once there is one."""
        deadline = time.monotonic() + WAIT_S
        while True:
            frames = self.send("Page.getFrameTree", page=True)["frameTree"].get("childFrames", [])
            found = [f["frame"] for f in frames if url_part in f["frame"]["url"]]
            if found:
                return self.send("Page.createIsolatedWorld", page=True, frameId=found[0]["id"])["executionContextId"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no frame with {url_part!r} in its URL after {WAIT_S:.0f} s")
            time.sleep(0.2)

    def screenshot(self, out: Path) -> None:
        """Save the page as it shows now as PNG."""
        data = self.send("Page.captureScreenshot", page=True, format="png")["data"]
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            self.process.kill()
        self.process.wait(timeout=WAIT_S)
        os.close(self._in)
        os.close(self._out)
        self.profile.cleanup()

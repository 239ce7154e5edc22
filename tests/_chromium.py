"""Headless Chromium driven over the DevTools protocol, for testing a page as a user sees it.

Playwright would download its own browsers, which is not possible here; Debian's ``chromium``
speaks the same DevTools protocol, and over ``--remote-debugging-pipe`` (JSON messages ending in
a NUL byte on file descriptors 3 and 4) it needs no WebSocket client either.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["Chromium", "chromium_binary", "without_chromium"]


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def without_chromium(reason: str) -> NoReturn:
    """A browser test that cannot find Chromium skips on a developer's machine, but fails where
    ``CI`` is set (as GitHub Actions, GitLab and most CI services set it): CI must not go green
    by skipping the one test that looks at the pages as a user does."""
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI is set, so the browser test may not skip", pytrace=False)
    pytest.skip(reason)


class Chromium:
    """One headless browser with one page, commanded over a pipe; every wait is bounded."""

    def __init__(self, binary: str, profile: Path, *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser's ends above 4, so that moving them to 3 and 4 overwrites neither.
        to_browser_r, from_browser_w = (_above_4(fd) for fd in (to_browser_r, from_browser_w))
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--window-size=1000,900",
        ]
        # The protocol's descriptors are 3 (commands in) and 4 (answers out): the shell puts the
        # pipes there (bash: dash takes one-digit descriptors only), so no pre-exec hook runs in
        # the forked child.
        command = 'exec "$@" 3<&"$HS_IN" 4>&"$HS_OUT"'
        env = {**os.environ, "HS_IN": str(to_browser_r), "HS_OUT": str(from_browser_w)}
        self.process = subprocess.Popen(
            ["bash", "-c", command, "bash", *args],
            pass_fds=(to_browser_r, from_browser_w),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []  # every event received, in order
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if "method" in answer:
                self.events.append(answer)
            elif answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the page."""
        return self.send(method, self.session, **params)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float | None = None) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never satisfied {expression!r}")
            time.sleep(0.2)

    def set_files(self, selector: str, files: list[Path]) -> None:
        """Choose ``files`` in the file input ``selector``, as a user picking them does."""
        found = self.page("Runtime.evaluate", expression=f"document.querySelector({selector!r})")
        self.page(
            "DOM.setFileInputFiles",
            files=[str(f) for f in files],
            objectId=found["result"]["objectId"],
        )

    def screenshot(self, path: Path) -> None:
        data = self.page("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

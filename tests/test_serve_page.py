"""The page of `headstart serve` in headless Chromium: pick images, see the answers, offline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from headstart.cli.main import main
from headstart.serve import create_app

from ._chromium import Chromium, chromium_binary, without_chromium

pytestmark = pytest.mark.usefixtures("one_torch_thread", "needs_chromium")


@pytest.fixture(scope="module")
def needs_chromium() -> None:
    if chromium_binary() is None:
        without_chromium("needs Debian's chromium (scripts/ensure_chromium.sh installs it)")


FAST = ["--model", "test_resnet", "--weights", "none", "--epochs", "3", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, colour_data: Path) -> Iterator[str]:
    import uvicorn

    run = tmp_path_factory.mktemp("runs") / "colours"
    assert main(["train", str(colour_data), "--out", str(run), *FAST]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app([run]), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_picked_images_show_their_classes_as_bars_and_their_maps(
    server_url, colour_data, tmp_path
) -> None:
    images = [sorted((colour_data / "test" / name).iterdir())[0] for name in ("red", "blue")]
    browser = Chromium(str(chromium_binary()), tmp_path / "profile")
    try:
        browser.page("Network.enable")
        browser.page("Page.navigate", url=server_url + "/")
        browser.wait_for("document.querySelectorAll('#model option').length === 1")
        browser.set_files("#files", images)
        browser.wait_for("document.querySelectorAll('.result[data-map=shown]').length === 2")
        shown = browser.evaluate(
            """Array.from(document.querySelectorAll('.result')).map(r => ({
                name: r.querySelector('.name').textContent,
                verdict: r.querySelector('.verdict').textContent,
                bars: Array.from(r.querySelectorAll('.bar .label')).map(b => b.textContent),
                map: r.querySelector('.picture').src.startsWith('blob:'),
            }))"""
        )
        browser.screenshot(tmp_path / "page.png")
    finally:
        browser.close()
    # Newest first: the page puts each answer above the earlier ones.
    assert [s["name"] for s in shown] == [images[1].name, images[0].name]
    for answer in shown:
        assert sorted(answer["bars"]) == ["blue", "green", "red"]  # top 5 of 3 classes
        assert answer["verdict"].split()[0] in {"blue", "green", "red"}
        assert answer["map"]
    assert (tmp_path / "page.png").stat().st_size > 10_000
    requested = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e["method"] == "Network.requestWillBeSent"
    ]
    assert requested and all(url.startswith((server_url, "blob:", "data:")) for url in requested), (
        requested
    )

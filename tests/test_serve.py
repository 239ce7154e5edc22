"""`headstart serve`: the HTTP API and page over trained runs, as clients would use them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from headstart.cli.main import build_parser, main
from headstart.serve import Limits, ServeSettings, create_app

from ._images import write_truncated

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--model", "test_resnet", "--weights", "none", "--epochs", "3", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, colour_data: Path) -> Path:
    run = tmp_path_factory.mktemp("runs") / "colours"
    assert main(["train", str(colour_data), "--out", str(run), *FAST]) == 0
    return run


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    app = create_app([trained_run], ServeSettings(limits=Limits(max_upload=200_000, max_files=4)))
    with TestClient(app) as client:
        yield client


def _images(colour_data: Path, n: int) -> list[Path]:
    return sorted(p for p in (colour_data / "test").rglob("*") if p.is_file())[:n]


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def _predict_json(run: Path, paths: list[Path], capsys, *extra: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["predict", str(run), *map(str, paths), "--json", "--workers", "0", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _assert_same_answers(served: list[dict[str, Any]], printed: list[dict[str, Any]]) -> None:
    assert len(served) == len(printed)
    for got, want in zip(served, printed, strict=True):
        assert set(got) == set(want)
        assert got["path"] == Path(want["path"]).name
        assert got["label"] == want["label"]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
        if "typicality" in want:
            assert got["typicality"] == pytest.approx(want["typicality"], abs=1e-6)
            assert got["unknown"] == want["unknown"]
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want["top_k"]]
        np.testing.assert_allclose(
            [t["probability"] for t in got["top_k"]],
            [t["probability"] for t in want["top_k"]],
            atol=1e-6,
        )


def test_predict_answers_what_predict_json_prints_for_the_same_files(
    client, trained_run, colour_data, capsys
) -> None:
    paths = _images(colour_data, 4)  # PNGs and JPEGs of all three classes
    printed = _predict_json(trained_run, paths, capsys, "--top-k", "3")
    assert {"typicality", "unknown"} <= set(printed[0])  # the run has a typicality score
    response = client.post("/predict?top_k=3", files=_files(paths))
    assert response.status_code == 200
    _assert_same_answers(response.json(), printed)


def test_a_raw_image_body_is_one_file_named_by_the_filename_parameter(
    client, trained_run, colour_data, capsys
) -> None:
    path = _images(colour_data, 1)[0]
    printed = _predict_json(trained_run, [path], capsys)
    response = client.post(
        f"/predict?filename={path.name}",
        content=path.read_bytes(),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200
    _assert_same_answers(response.json(), printed)


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels: a decompression bomb
    to anything that believes its header."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def _bad_requests(
    tmp_path: Path, *, asynchronous: bool = False
) -> list[tuple[str, dict[str, Any], int, str]]:
    """(what, request keywords, the status it must get, a part of its message)."""
    truncated = write_truncated(tmp_path / "cut.jpg", "JPEG").read_bytes()
    png = _png_claiming(8, 8)

    def chunks(total: int) -> Any:
        if asynchronous:

            async def stream() -> AsyncIterator[bytes]:
                for _ in range(total // 10_000):
                    yield b"\0" * 10_000

            return stream()
        return iter([b"\0" * 10_000] * (total // 10_000))

    return [
        ("not an image", {"files": [("files", ("a.txt", b"hello", "text/plain"))]}, 422, "a.txt"),
        ("truncated", {"files": [("files", ("cut.jpg", truncated, "image/jpeg"))]}, 422, "cut"),
        (
            "bomb",
            {"files": [("files", ("bomb.png", _png_claiming(30_000, 30_000), "image/png"))]},
            422,
            "decompression bomb",
        ),
        (
            "too large",
            {
                "content": b"\xff\xd8\xff" + b"\0" * 300_000,
                "headers": {"Content-Type": "image/jpeg"},
            },
            413,
            "upload limit",
        ),
        (
            "too large, streamed without a length",
            {"content": chunks(400_000), "headers": {"Content-Type": "image/jpeg"}},
            413,
            "upload limit",
        ),
        (
            "too many files",
            {"files": [("files", (f"{i}.png", png, "image/png")) for i in range(5)]},
            413,
            "Too many files",
        ),
        (
            "wrong content type",
            {"content": b"{}", "headers": {"Content-Type": "application/json"}},
            415,
            "application/json",
        ),
        ("empty body", {"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty"),
        ("bad top_k", {"params": {"top_k": "0"}, "files": _files_of(png)}, 400, "top_k"),
        (
            "bad unknown_threshold",
            {"params": {"unknown_threshold": "2"}, "files": _files_of(png)},
            400,
            "within [0, 1]",
        ),
        ("unknown model", {"url": "/models/nope/predict", "files": _files_of(png)}, 404, "nope"),
        ("unknown route", {"url": "/nowhere"}, 404, "Not Found"),
    ]


def _files_of(data: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", ("x.png", data, "image/png"))]


def test_each_bad_input_gets_a_4xx_json_error_and_the_next_request_is_answered(
    client, colour_data, tmp_path
) -> None:
    good = _files(_images(colour_data, 1))
    for what, kwargs, status, message in _bad_requests(tmp_path):
        url = kwargs.pop("url", "/predict")
        response = client.post(url, **kwargs)
        assert response.status_code == status, what
        assert message in response.json()["error"], what
        assert client.post("/predict", files=good).status_code == 200, what


def test_bad_inputs_are_refused_while_concurrent_good_requests_are_answered(
    trained_run, colour_data, tmp_path
) -> None:
    app = create_app([trained_run], ServeSettings(limits=Limits(max_upload=200_000, max_files=4)))
    good = _files(_images(colour_data, 1))
    bad = _bad_requests(tmp_path, asynchronous=True)

    async def both() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with app.router.lifespan_context(app), _async_client(app) as http:
            goods = [http.post("/predict", files=good) for _ in range(12)]
            bads = [http.post(kw.pop("url", "/predict"), **kw) for _, kw, _, _ in bad]
            answers = await asyncio.gather(*goods, *bads)
        return answers[: len(goods)], answers[len(goods) :]

    goods, bads = asyncio.run(both())
    assert [r.status_code for r in goods] == [200] * len(goods)
    assert [r.status_code for r in bads] == [status for _, _, status, _ in bad]
    assert all("error" in r.json() for r in bads)


def _async_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _backbone_calls(app: Any) -> list[int]:
    """The batch size of every forward pass of the (only) model's backbone, as they happen."""
    (model,) = app.state.models.values()
    sizes: list[int] = []
    module = model.predictor.classifier.backbone_.module
    module.register_forward_hook(lambda mod, args, out: sizes.append(len(args[0])))
    return sizes


@pytest.mark.parametrize(("max_batch", "expected"), [(4, [4]), (1, [1, 1, 1, 1])])
def test_concurrent_requests_share_a_forward_pass_unless_batching_is_off(
    trained_run, colour_data, max_batch, expected
) -> None:
    # A long wait: the batch runs when it is full, never when the wait runs out first.
    app = create_app([trained_run], ServeSettings(max_batch=max_batch, max_wait=30.0))
    sizes = _backbone_calls(app)
    images = _images(colour_data, 4)

    async def concurrently() -> list[httpx.Response]:
        async with app.router.lifespan_context(app), _async_client(app) as http:
            return await asyncio.gather(*(http.post("/predict", files=_files([p])) for p in images))

    answers = asyncio.run(concurrently())
    assert [r.status_code for r in answers] == [200] * 4
    assert [r.json()[0]["path"] for r in answers] == [p.name for p in images]
    assert sizes == expected


def test_requests_with_their_own_unknown_threshold_share_a_batch_and_get_their_own_flags(
    trained_run, colour_data, capsys
) -> None:
    path = _images(colour_data, 1)[0]
    thresholds = ["0", "0.5", "1"]
    printed = [
        _predict_json(trained_run, [path], capsys, "--unknown-threshold", t)[0] for t in thresholds
    ]
    app = create_app([trained_run], ServeSettings(max_batch=3, max_wait=30.0))
    sizes = _backbone_calls(app)

    async def concurrently() -> list[httpx.Response]:
        async with app.router.lifespan_context(app), _async_client(app) as http:
            return await asyncio.gather(
                *(
                    http.post("/predict", params={"unknown_threshold": t}, files=_files([path]))
                    for t in thresholds
                )
            )

    served = [r.json()[0] for r in asyncio.run(concurrently())]
    assert sizes == [3]
    for got, want in zip(served, printed, strict=True):
        _assert_same_answers([got], [want])
    assert served[0]["unknown"] is False  # nothing is less typical than 0


def test_a_threshold_for_a_run_without_typicality_is_refused(colour_data, tmp_path) -> None:
    run = tmp_path / "plain"
    assert (
        main(["train", str(colour_data), "--out", str(run), *FAST, "--unknown-score", "none"]) == 0
    )
    with TestClient(create_app([run])) as client:
        files = _files(_images(colour_data, 1))
        plain = client.post("/predict", files=files)
        assert plain.status_code == 200 and "unknown" not in plain.json()[0]
        refused = client.post("/predict?unknown_threshold=0.1", files=files)
        assert refused.status_code == 400 and "has none" in refused.json()["error"]


def test_images_are_decoded_off_the_event_loop(trained_run, colour_data) -> None:
    import threading

    app = create_app([trained_run])
    (model,) = app.state.models.values()
    threads: list[threading.Thread] = []
    prepare = model.predictor.prepare

    def spy(data: bytes, name: str) -> Any:
        threads.append(threading.current_thread())
        return prepare(data, name)

    model.predictor.prepare = spy  # type: ignore[method-assign]

    async def post() -> tuple[httpx.Response, threading.Thread]:
        async with app.router.lifespan_context(app), _async_client(app) as http:
            files = _files(_images(colour_data, 2))
            return await http.post("/predict", files=files), threading.current_thread()

    response, loop_thread = asyncio.run(post())
    assert response.status_code == 200
    assert len(threads) == 2 and loop_thread not in threads


def test_a_failure_inside_is_a_json_500_without_a_traceback_and_serving_goes_on(
    trained_run, colour_data
) -> None:
    app = create_app([trained_run])
    (model,) = app.state.models.values()
    features = model.predictor.features
    broken = {"now": True}

    def failing(images: Any) -> Any:
        if broken["now"]:
            raise RuntimeError("secret internals")
        return features(images)

    model.predictor.features = failing  # type: ignore[method-assign]
    files = _files(_images(colour_data, 1))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", files=files)
        assert response.status_code == 500
        assert set(response.json()) == {"error"}
        assert "secret" not in response.text and "Traceback" not in response.text
        broken["now"] = False
        assert client.post("/predict", files=files).status_code == 200


def test_info_is_what_info_json_prints(client, trained_run, capsys) -> None:
    capsys.readouterr()
    assert main(["info", str(trained_run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert client.get("/info").json() == printed
    assert client.get("/models/colours/info").json() == printed


def test_health_names_the_models(client) -> None:
    assert client.get("/health").json() == {
        "status": "ok",
        "models": ["colours"],
        "token_required": False,
    }


def test_the_openapi_schema_describes_every_route(client) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    routes = {route.path for route in client.app.routes}  # type: ignore[attr-defined]
    assert set(schema["paths"]) == routes


def test_the_page_is_served_and_loads_nothing_from_elsewhere(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    linked = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert sorted(linked) == ["assets/page.css", "assets/page.js"]
    for text in (page.text, *(client.get(url).text for url in linked)):
        assert not re.search(r"https?:|//[a-z]", text), "an external URL"
    assert "explain" in client.get("assets/page.js").text


def test_explain_returns_the_map_over_the_image_as_a_png(client, trained_run, colour_data):
    path = _images(colour_data, 1)[0]
    response = client.post("/explain", files=_files([path]))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    config = json.loads((trained_run / "config.json").read_text())["headstart"]
    size = config["preprocess"]["input_size"]
    assert Image.open(io.BytesIO(response.content)).size == (size[-1], size[-2])
    unknown = client.post("/explain?class=purple", files=_files([path]))
    assert unknown.status_code == 400 and "purple" in unknown.json()["error"]


def test_several_runs_are_served_by_their_folder_names(trained_run, colour_data, tmp_path):
    other = tmp_path / "colours-copy"
    shutil.copytree(trained_run, other)
    app = create_app([trained_run, other])
    path = _images(colour_data, 1)[0]
    with TestClient(app) as client:
        assert [m["name"] for m in client.get("/models").json()] == ["colours", "colours-copy"]
        first = client.post("/models/colours/predict", files=_files([path])).json()
        second = client.post("/models/colours-copy/predict", files=_files([path])).json()
        assert first == second == client.post("/predict", files=_files([path])).json()
        assert client.get("/models/colours-copy/info").status_code == 200


def test_runs_with_the_same_folder_name_are_refused_in_one_line(trained_run, tmp_path, capsys):
    twin = tmp_path / "elsewhere" / trained_run.name
    shutil.copytree(trained_run, twin)
    assert main(["serve", str(trained_run), str(twin)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: Two runs are both named 'colours'")


def test_without_the_serve_extra_one_line_says_how_to_get_it(trained_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert main(["serve", str(trained_run)]) == 2
    assert capsys.readouterr().err == (
        "error: headstart serve needs the serve extra: pip install 'headstart[serve]'\n"
    )


def test_serve_listens_on_localhost_unless_told_otherwise(trained_run, monkeypatch, capsys):
    import uvicorn

    assert build_parser().parse_args(["serve", "run"]).host == "127.0.0.1"
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    any_port = ["--port", "0"]  # serve tries the address first: 8000 may be taken here
    assert main(["serve", str(trained_run), "-q", *any_port]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and capsys.readouterr().err == ""
    assert main(["serve", str(trained_run), "--host", "0.0.0.0", "-q", *any_port]) == 0
    assert calls[-1]["host"] == "0.0.0.0"
    assert calls[-1]["timeout_keep_alive"] == 5
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "add --token" in warning


def test_an_address_it_cannot_listen_on_exits_2_in_one_line_before_serving(
    trained_run, monkeypatch, capsys
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("uvicorn was started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for extra, reason in (
            (["--port", port], f"Cannot listen on 127.0.0.1:{port}: Address already in use"),
            (["--port", "99999"], "--port must be 0 to 65535, got 99999"),
        ):
            assert main(["serve", str(trained_run), *extra]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith(f"error: {reason}")


def test_with_a_token_the_api_needs_it_and_the_page_does_not(trained_run, colour_data) -> None:
    app = create_app([trained_run], ServeSettings(token="s3cret"))
    files = _files(_images(colour_data, 1))
    with TestClient(app) as client:
        assert client.post("/predict", files=files).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/predict", files=files, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert client.post("/predict", files=files, headers=right).status_code == 200
        assert client.get("/").status_code == client.get("/health").status_code == 200
        assert client.get("/health").json()["token_required"] is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_served_command_answers_a_real_http_client(trained_run, colour_data, capsys):
    path = _images(colour_data, 1)[0]
    printed = _predict_json(trained_run, [path], capsys)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-m", "headstart", "serve", str(trained_run), "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start in 120 s"
            time.sleep(0.5)
        response = httpx.post(f"{url}/predict", files=_files([path]), timeout=60)
        assert response.status_code == 200
        _assert_same_answers(response.json(), printed)
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert '"POST /predict HTTP/1.1" 200' in log  # uvicorn's access line

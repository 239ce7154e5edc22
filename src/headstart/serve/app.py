"""The ASGI app of ``headstart serve``: one or several trained runs behind an HTTP API and a page.

Each run is loaded once, when the app is made, and answers through an
:class:`~headstart.inference.ImagePredictor`: decoding and preprocessing run in threads (never on
the event loop), and the images of requests that arrive together go through the backbone as one
batch (:class:`~headstart.serve.batching.MicroBatcher`). A prediction is
``Prediction.to_dict()``, the very JSON ``headstart predict --json`` prints for the same file.

Every refusal is ``{"error": "..."}`` with a 4xx status, and an unexpected failure is a JSON 500
whose traceback goes to the server log, never into the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import torch
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from headstart.errors import HeadstartError, ImageDecodeError, InvalidParameterError
from headstart.estimator import ImageClassifier
from headstart.features.batches import default_num_threads
from headstart.fitted import missing_typicality
from headstart.inference import ImagePredictor
from headstart.predictions import Prediction
from headstart.runs import read_config
from headstart.serve.batching import MicroBatcher
from headstart.serve.schema import openapi_schema
from headstart.serve.uploads import ApiError, Limits, Upload, read_uploads

__all__ = ["ServeSettings", "ServedModel", "create_app", "model_names"]

_ASSETS = {"page.css": "text/css", "page.js": "text/javascript"}
# (prepared image, name, top-k, unknown threshold): what a request puts on its model's queue.
_Job = tuple[torch.Tensor, str, int, float | None]


@dataclass(frozen=True)
class ServeSettings:
    """How the server batches and what it accepts.

    Attributes:
        limits: What one request may send (:class:`~headstart.serve.uploads.Limits`).
        max_batch: Images per forward pass at most (1: each image alone, no batching).
        max_wait: Seconds the first image of a batch waits for others.
        token: When set, the API (not the page, ``/health`` or the schema) asks for
            ``Authorization: Bearer <token>``.
        device: Where the models run (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    """

    limits: Limits = field(default_factory=Limits)
    max_batch: int = 32
    max_wait: float = 0.005
    token: str | None = None
    device: str = "auto"


@dataclass
class ServedModel:
    """One run as the server holds it.

    Attributes:
        name: Its name in URLs (``/models/NAME/predict``): the run folder's name.
        run: The run folder.
        predictor: The loaded classifier, ready for batches.
        batcher: Its queue of images from concurrent requests.
        info: The run's ``headstart`` config, what ``headstart info RUN --json`` prints.
    """

    name: str
    run: Path
    predictor: ImagePredictor
    batcher: MicroBatcher[_Job, Prediction]
    info: dict[str, Any]


def model_names(runs: Sequence[str | Path]) -> list[str]:
    """The URL name of each run: its folder's name.

    Raises:
        InvalidParameterError: two runs have the same folder name, so one URL would name both.
    """
    names = [Path(run).resolve().name for run in runs]
    for name in names:
        if names.count(name) > 1:
            same = ", ".join(str(run) for run, n in zip(runs, names, strict=True) if n == name)
            raise InvalidParameterError(
                f"Two runs are both named {name!r} ({same}); the server names each by its "
                "folder, so serve runs whose folder names differ (rename or copy one)."
            )
    return names


def create_app(runs: Sequence[str | Path], settings: ServeSettings | None = None) -> Starlette:
    """The app serving ``runs`` (run folders), each loaded once, here.

    The first run is also served at the top level (``/predict``, ``/info``, ``/explain``).

    Raises:
        InvalidParameterError: two runs share a folder name.
        RunFolderError: a run cannot be loaded.
    """
    settings = settings or ServeSettings()
    models: dict[str, ServedModel] = {}
    for name, run in zip(model_names(runs), runs, strict=True):
        clf = ImageClassifier.load(run, device=settings.device, quiet=True)
        predictor = ImagePredictor(clf)
        models[name] = ServedModel(
            name=name,
            run=Path(run),
            predictor=predictor,
            batcher=MicroBatcher(
                _batch_function(predictor),
                max_batch=settings.max_batch,
                max_wait=settings.max_wait,
            ),
            info=read_config(run)["headstart"],
        )
    return _Server(models, settings).app


def _batch_function(predictor: ImagePredictor) -> Callable[[Sequence[_Job]], list[Prediction]]:
    """One forward pass over the jobs of several requests; each request's answers as it asked
    for them (its top-k and unknown threshold), by ``predict_features`` per kind of request."""

    def run(jobs: Sequence[_Job]) -> list[Prediction]:
        features = predictor.features([job[0] for job in jobs])
        rows: dict[tuple[int, float | None], list[int]] = {}
        for row, (_, _, top_k, threshold) in enumerate(jobs):
            rows.setdefault((top_k, threshold), []).append(row)
        answers: list[Prediction | None] = [None] * len(jobs)
        for (top_k, threshold), group in rows.items():
            names = [jobs[row][1] for row in group]
            answered = predictor.classifier.predict_features(
                features[group], names, top_k=top_k, unknown_threshold=threshold
            )
            for row, answer in zip(group, answered, strict=True):
                answers[row] = answer
        return [answer for answer in answers if answer is not None]

    return run


class _Server:
    """The endpoints, over the loaded models and the settings."""

    def __init__(self, models: dict[str, ServedModel], settings: ServeSettings) -> None:
        self.models = models
        self.default = next(iter(models.values()))
        self.settings = settings
        # Decoding threads: one per core. More would only queue for the same cores and hold
        # more decoded images in memory at once.
        self.decoders = anyio.CapacityLimiter(default_num_threads())
        routes = [
            Route("/", self.page, methods=["GET"]),
            Route("/assets/{asset}", self.asset, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/openapi.json", self.schema, methods=["GET"]),
            Route("/models", self.list_models, methods=["GET"]),
            Route("/info", self.info, methods=["GET"]),
            Route("/predict", self.predict, methods=["POST"]),
            Route("/explain", self.explain, methods=["POST"]),
            Route("/models/{name}/info", self.info, methods=["GET"]),
            Route("/models/{name}/predict", self.predict, methods=["POST"]),
            Route("/models/{name}/explain", self.explain, methods=["POST"]),
        ]
        self.app = Starlette(
            routes=routes,
            lifespan=self.lifespan,
            exception_handlers={
                ApiError: self.api_error,
                HTTPException: self.http_error,
                Exception: self.server_error,
            },
        )
        self.app.state.models = models

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for model in self.models.values():
            await model.batcher.start()
        try:
            yield
        finally:
            for model in self.models.values():
                await model.batcher.stop()

    # ------------------------------------------------------------------ endpoints
    async def page(self, request: Request) -> Response:
        return HTMLResponse(_asset_text("index.html"))

    async def asset(self, request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in _ASSETS:
            raise ApiError(404, f"No asset {name!r}.")
        return Response(_asset_text(name), media_type=_ASSETS[name])

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "models": list(self.models),
                "token_required": self.settings.token is not None,
            }
        )

    async def schema(self, request: Request) -> Response:
        return JSONResponse(openapi_schema(list(self.models)))

    async def list_models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse(
            [
                {"name": m.name, "classes": m.predictor.classifier.classes_}
                for m in self.models.values()
            ]
        )

    async def info(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse(self._model(request).info)

    async def predict(self, request: Request) -> Response:
        self._authorize(request)
        model = self._model(request)
        top_k = _top_k(request)
        threshold = _unknown_threshold(request, model)
        with model.batcher.coming():
            uploads = await read_uploads(
                request, self.settings.limits, raw_name=request.query_params.get("filename", "-")
            )
            prepared = await self._each(uploads, model.predictor.prepare)
        answers = await model.batcher.submit_many(
            [(x, u.name, top_k, threshold) for x, u in zip(prepared, uploads, strict=True)]
        )
        return JSONResponse([p.to_dict() for p in answers])

    async def explain(self, request: Request) -> Response:
        from headstart.reporting.explain import explain_image, overlay

        self._authorize(request)
        model = self._model(request)
        wanted = request.query_params.get("class")
        uploads = await read_uploads(
            request, self.settings.limits, raw_name=request.query_params.get("filename", "-")
        )
        if len(uploads) != 1:
            raise ApiError(400, f"Explain takes one image, got {len(uploads)}.")
        (image,) = await self._each(uploads, model.predictor.decode)
        predictor = model.predictor

        def explain() -> bytes:
            import io

            with predictor.lock:
                (explanation,) = explain_image(
                    predictor.classifier, image, classes=[wanted] if wanted else None
                )
            buf = io.BytesIO()
            overlay(explanation).save(buf, format="PNG")
            return buf.getvalue()

        try:
            png = await anyio.to_thread.run_sync(explain)
        except InvalidParameterError as exc:
            raise ApiError(400, str(exc)) from None
        except HeadstartError as exc:  # a backbone without a spatial map, for one
            raise ApiError(422, str(exc)) from None
        return Response(png, media_type="image/png")

    # ------------------------------------------------------------------ helpers
    def _authorize(self, request: Request) -> None:
        token = self.settings.token
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            raise ApiError(401, "This server needs 'Authorization: Bearer <token>'.")

    def _model(self, request: Request) -> ServedModel:
        name = request.path_params.get("name")
        if name is None:
            return self.default
        model = self.models.get(name)
        if model is None:
            raise ApiError(
                404,
                f"No model named {name!r}; this server has {', '.join(map(repr, self.models))}.",
            )
        return model

    async def _each(self, uploads: Sequence[Upload], work: Any) -> list[Any]:
        """``work(data, name)`` of every upload, in threads; unreadable images refuse the
        request (422) and name each file that could not be read."""

        async def one(upload: Upload) -> Any:
            try:
                return await anyio.to_thread.run_sync(
                    work, upload.data, upload.name, limiter=self.decoders
                )
            except ImageDecodeError as exc:
                return exc

        results = await asyncio.gather(*(one(u) for u in uploads))
        failed = [
            (u, r) for u, r in zip(uploads, results, strict=True) if isinstance(r, ImageDecodeError)
        ]
        if failed:
            listed = "; ".join(f"{u.name}: {r.reason}" for u, r in failed)
            raise ApiError(
                422,
                f"{len(failed)} of {len(uploads)} file(s) could not be read as images: {listed}",
                files=[{"path": u.name, "error": r.reason} for u, r in failed],
            )
        return results

    # ------------------------------------------------------------------ errors
    async def api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        body: dict[str, Any] = {"error": exc.message}
        if exc.files:
            body["files"] = exc.files
        return JSONResponse(body, status_code=exc.status)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer, so the server's log gets the traceback.
        return JSONResponse(
            {"error": "internal server error; the server's log has the details"}, status_code=500
        )


def _top_k(request: Request) -> int:
    text = request.query_params.get("top_k", "1")
    if not text.isdigit() or int(text) < 1:
        raise ApiError(400, f"top_k must be a whole number of at least 1, got {text!r}.")
    return int(text)


def _unknown_threshold(request: Request, model: ServedModel) -> float | None:
    """The ``unknown_threshold`` parameter (``predict --unknown-threshold``), checked here: a
    bad value must be refused for its own request, not fail the batch it would join."""
    text = request.query_params.get("unknown_threshold")
    if text is None:
        return None
    if model.predictor.classifier.typicality_ is None:
        raise ApiError(
            400,
            f"unknown_threshold needs a run with a typicality score, and {model.name!r} has none "
            f"({missing_typicality(model.predictor.classifier.unknowns_)}).",
        )
    try:
        threshold = float(text)
    except ValueError:
        threshold = math.nan
    if not 0.0 <= threshold <= 1.0:
        raise ApiError(
            400,
            f"unknown_threshold must be a number within [0, 1], got {text!r} (0.05: about "
            "95% of known images accepted).",
        )
    return threshold


def _asset_text(name: str) -> str:
    return resources.files("headstart.serve").joinpath("assets", name).read_text("utf-8")

"""Reading the images of a request, within limits, or refusing it with a client error.

Everything a client sends is bounded before it costs the server memory or time:

- the body: refused (413) from its ``Content-Length`` before a byte is read, and counted while it
  streams in (a body sent in chunks has no length), so no more than ``max_upload`` bytes are
  ever read;
- the files: at most ``max_files`` in one multipart form (413), counted by the form parser as
  their headers arrive, before their content;
- the time: the whole body must arrive within ``read_timeout`` seconds (408), so a client that
  trickles bytes holds a connection for that long at most;
- the kind: a multipart form, or one image as the raw body (``image/*`` or
  ``application/octet-stream``); anything else is refused (415) unread.

Multipart parsing is Starlette's (python-multipart underneath), fed by the counting stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import anyio
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

__all__ = ["ApiError", "Limits", "Upload", "read_uploads"]

_RAW_TYPES = ("application/octet-stream",)


class ApiError(Exception):
    """A request the server refuses: answered as ``{"error": message}`` with ``status``, and
    ``"files"``, each unreadable file with its reason, when some could not be read."""

    def __init__(
        self, status: int, message: str, *, files: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.files = files or []


@dataclass(frozen=True)
class Limits:
    """What one request may send.

    Attributes:
        max_upload: Bytes of body, all files together.
        max_files: Files in one multipart form.
        read_timeout: Seconds the whole body may take to arrive.
    """

    max_upload: int = 20_000_000
    max_files: int = 16
    read_timeout: float = 30.0


@dataclass(frozen=True)
class Upload:
    """One image as received: its name (the form's file name) and its bytes."""

    name: str
    data: bytes


async def read_uploads(request: Request, limits: Limits, *, raw_name: str = "-") -> list[Upload]:
    """The images of ``request``: every file of a multipart form, or the raw body as one.

    Args:
        raw_name: The name of a raw-body image (the ``filename`` query parameter, else "-", as a
            file read from standard input is called).

    Raises:
        ApiError: 413 (too large, too many files), 408 (too slow), 415 (not a form or an
            image), 400 (a broken form, or no file in it).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_upload:
        raise _too_large(limits)
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    try:
        with anyio.fail_after(limits.read_timeout):
            if kind == "multipart/form-data":
                return await _read_form(request, limits)
            if kind.startswith("image/") or kind in _RAW_TYPES:
                data = b"".join([chunk async for chunk in _counted(request, limits)])
                if not data:
                    raise ApiError(400, "The request body is empty; send an image.")
                return [Upload(raw_name, data)]
    except TimeoutError:
        raise ApiError(
            408, f"The request body did not arrive within {limits.read_timeout:g} s."
        ) from None
    except ClientDisconnect:  # nobody is left to answer; not a server error to log
        raise ApiError(400, "The client went away before its request arrived.") from None
    raise ApiError(
        415,
        f"Content type {kind or 'none'!r} is not accepted; send images as a multipart form "
        "(fields named 'file' or 'files') or one image as the raw body (image/* or "
        "application/octet-stream).",
    )


async def _read_form(request: Request, limits: Limits) -> list[Upload]:
    parser = MultiPartParser(
        request.headers,
        _counted(request, limits),
        max_files=limits.max_files,
        max_fields=limits.max_files,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        status = 413 if exc.message.startswith(("Too many files", "Too many fields")) else 400
        raise ApiError(status, f"The multipart form was refused: {exc.message}") from None
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise ApiError(400, "The form holds no file; send images as file fields.")
        return [Upload(f.filename or "-", await f.read()) for f in files]
    finally:
        await form.close()


async def _counted(request: Request, limits: Limits) -> AsyncGenerator[bytes, None]:
    """The body as it streams in, refused as soon as it passes ``max_upload`` bytes."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limits.max_upload:
            raise _too_large(limits)
        yield chunk


def _too_large(limits: Limits) -> ApiError:
    return ApiError(
        413,
        f"The request is over the upload limit of {limits.max_upload:,} bytes; send fewer or "
        "smaller images, or start the server with a larger --max-upload.",
    )

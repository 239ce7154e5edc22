"""`headstart serve RUN [RUN...]`: trained runs behind an HTTP API and a web page."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys

from headstart.cli._common import require_run

__all__ = ["register", "run"]

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
# Seconds an idle keep-alive connection stays open (uvicorn's default, stated here because a
# server facing slow or idle clients should say what it allows).
KEEP_ALIVE_S = 5
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _size(text: str) -> int:
    """``20MB``, ``512k``, ``1.5G`` or plain bytes; powers of ten, as HTTP tools count."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 20MB or 512k, got {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve trained runs over HTTP: an API and a web page",
        description="Serve the models in RUN... over HTTP: POST /predict answers with the JSON "
        "of `headstart predict --json`, GET / is a page to try images on, GET /info, /health "
        "and /openapi.json describe it. Several runs: /models/NAME/predict, NAME being the run "
        "folder's name. Needs the serve extra: pip install 'headstart[serve]'.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders to serve")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every "
        "network, with --token)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--token",
        default=os.environ.get("HEADSTART_SERVE_TOKEN"),
        help="ask API clients for 'Authorization: Bearer TOKEN' (default: the "
        "HEADSTART_SERVE_TOKEN environment variable, which keeps it out of the process list)",
    )
    parser.add_argument(
        "--max-upload",
        type=_size,
        default="20MB",
        metavar="SIZE",
        help="largest request body, all images together (default 20MB)",
    )
    parser.add_argument(
        "--max-files",
        type=int,
        default=16,
        metavar="N",
        help="most images in one request (default 16)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=32,
        metavar="N",
        help="most images per forward pass, gathered from concurrent requests (default 32; "
        "1 turns batching off)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="how long a request's image waits for others to share its batch (default 5)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a request's body may take to arrive (default 30)",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no access lines, only warnings and errors"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import InvalidParameterError, MissingDependencyError

    try:
        import uvicorn

        from headstart.serve import Limits, ServeSettings, create_app, model_names
    except ImportError:
        raise MissingDependencyError(
            "headstart serve needs the serve extra: pip install 'headstart[serve]'"
        ) from None
    for flag, value in (("--max-files", args.max_files), ("--max-batch", args.max_batch)):
        if value < 1:
            raise InvalidParameterError(f"{flag} must be at least 1, got {value}.")
    if args.max_wait_ms < 0 or args.read_timeout <= 0:
        raise InvalidParameterError("--max-wait-ms must be 0 or more and --read-timeout above 0.")
    for i, folder in enumerate(args.runs):
        require_run(folder, command="serve", others=args.runs[i + 1 :])
    model_names(args.runs)  # duplicate names refused before any model loads
    _check_address(args.host, args.port)
    if args.host not in _LOCAL_HOSTS:
        protection = "requests need the token" if args.token else "anyone can use it; add --token"
        print(
            f"warning: serving on {args.host}: other machines can reach this server; {protection}",
            file=sys.stderr,
        )
    settings = ServeSettings(
        limits=Limits(
            max_upload=args.max_upload, max_files=args.max_files, read_timeout=args.read_timeout
        ),
        max_batch=args.max_batch,
        max_wait=args.max_wait_ms / 1000,
        token=args.token or None,
        device=args.device,
    )
    app = create_app(args.runs, settings)
    if not args.quiet:
        names = ", ".join(app.state.models)
        print(f"serving {names} on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        access_log=not args.quiet,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return 0


def _check_address(host: str, port: int) -> None:
    """Refuse an address this server could not listen on, before any model loads.

    uvicorn finds out only after startup: it logs the error among its INFO lines, exits with
    code 3, and the "serving ... on" line printed before it was untrue. A trial bind, with the
    ``SO_REUSEADDR`` uvicorn sets (a port in TIME_WAIT is no obstacle), says it in one line.
    """
    from headstart.errors import InvalidParameterError

    if not 0 <= port <= 65535:  # getaddrinfo takes any number, and bind then overflows
        raise InvalidParameterError(f"--port must be 0 to 65535, got {port}.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            trial.bind(address)
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidParameterError(
            f"Cannot listen on {host}:{port}: {reason}; pass another --port (or --host), or stop "
            "what is using it."
        ) from None

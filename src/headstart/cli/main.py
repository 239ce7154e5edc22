"""Entry point of the ``headstart`` command.

Each command lives in its own module with two functions: ``register(subparsers)`` adds its parser,
and ``run(args) -> int`` calls the library. This module is the only place that catches
``HeadstartError``: a user's mistake becomes one line on stderr and exit code 2; anything else is a
bug and keeps its traceback (the huggingface ``hf`` CLI does the same).
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import gc
import importlib
import io
import os
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import NoReturn

from headstart._version import __version__
from headstart.errors import HeadstartError, HeadstartWarning

__all__ = ["main", "build_parser"]

# Command modules in the order `--help` lists them. argparse (stdlib) parses: it is well kept,
# has no dependency, and subcommands plus typed options are all we need.
COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "serve",
    "export",
    "explain",
    "info",
    "advise",
    "compare",
    "report",
    "features",
    "data",
    "preprocess",
    "doctor",
    "backbones",
    "cache",
)


class _Parser(argparse.ArgumentParser):
    """argparse's parser with its errors in the form of every other headstart error: one line
    on stderr, exit code 2, with a did-you-mean for a mistyped command, option or choice.

    argparse's own form prints the command's whole usage first (35 lines for ``train``), which
    buries the one line that says what was wrong; ``--help`` still prints the usage.
    """

    commands: dict[str, argparse.ArgumentParser] = {}  # build_parser sets its own

    def error(self, message: str) -> NoReturn:
        guess = _did_you_mean(message, self._option_string_actions)
        self.exit(2, f"error: {message}.{guess} See `{self.prog} --help`.\n")


_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def _did_you_mean(message: str, options: Iterable[str]) -> str:
    """ " Did you mean 'train'?" for an argparse error about a near miss; "" otherwise."""
    prefix = ""
    if choice := _CHOICE.search(message):
        given, allowed = choice[1], re.findall(r"'([^']*)'", choice[2])
    elif message.startswith("unrecognized arguments: "):
        # Compared without the dashes, which every option shares: '--bogus' is near no option.
        flags = [a.split("=")[0][2:] for a in message.split()[2:] if a.startswith("--")]
        given, prefix = (flags[0] if flags else ""), "--"
        allowed = [o[2:] for o in options if o.startswith("--")]
    else:
        return ""
    close = difflib.get_close_matches(given, allowed, n=1)
    return f" Did you mean '{prefix}{close[0]}'?" if close and given else ""


def build_parser() -> argparse.ArgumentParser:
    """The ``headstart`` parser with every command registered; importing it loads no torch."""
    parser = _Parser(
        prog="headstart",
        description="Turn a folder of labelled images into an image classifier by transfer "
        "learning, with the preprocessing its pretrained weights expect.",
    )
    parser.add_argument("--version", action="version", version=f"headstart {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"headstart.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"headstart.cli.{name}":
                continue  # a command not built yet in this checkout
            raise
        module.register(subparsers)
    # An unknown option is found by the command's parser but reported by this one, which knows
    # no option of the command's to suggest: main() hands it to the command's parser.
    parser.commands = dict(subparsers.choices)
    return parser


def _decompression_bomb_warning() -> type[Warning]:
    from PIL import Image

    return Image.DecompressionBombWarning


def _show_warning(message: warnings.WarningMessage | Warning | str, *_: object) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``headstart`` command; the exit code: 0 done, 2 a user error said in one line."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = getattr(parser, "commands", {})
        commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        # headstart's own warnings are for the user: one plain line each, no source location.
        warnings.simplefilter("always", HeadstartWarning)
        # headstart refuses images over Pillow's pixel limit itself and lists them as skipped;
        # Pillow's own warning about them would only repeat that with a source line.
        warnings.filterwarnings("ignore", category=_decompression_bomb_warning())
        original = warnings.showwarning
        warnings.showwarning = lambda msg, cat, *a, **k: (
            _show_warning(msg) if issubclass(cat, HeadstartWarning) else original(msg, cat, *a, **k)
        )
        try:
            return int(args.func(args) or 0)
        except HeadstartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            how = f": {exc}" if str(exc) else ""  # a command may say how to go on
            print(f"interrupted{how}", file=sys.stderr)
            return 130
        finally:
            warnings.showwarning = original


def entry() -> int:
    """The ``headstart`` command as a process of its own (the console script, ``python -m
    headstart``, torchrun's workers): :func:`main`, then an exit without the interpreter's
    final garbage collections.

    Those collections walk every object that importing torch and timm created, to find cycles
    in a process that is about to end: about 2 s of every command's wall time on this project's
    machine (``python -c "import torch, timm"`` takes 8.4 s, 6.6 s with them skipped). Freezing
    the collector's generations as the last exit handler skips exactly that; the rest of the
    interpreter's exit is unchanged (exit handlers, streams flushed, modules torn down). Only a
    process of its own: :func:`main` called in a longer-lived one leaves its collector alone.
    """
    atexit.register(gc.freeze)  # registered first, so it runs after every other exit handler
    # A file name that is not UTF-8 (caf\xe9.jpg) comes from the file system as lone
    # surrogates; under a UTF-8 locale stdout refuses them, and `headstart data` listing such a
    # skipped file died in a UnicodeEncodeError. Printed as its bytes, as ls prints it.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    try:
        code = main()
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not at exit
    except BrokenPipeError:
        # The reader went away (`headstart data DATA | head`): the rest of the output is not
        # wanted, which is no error of headstart's. Python's own advice: point stdout at devnull
        # so the interpreter's final flush does not raise again, and exit 1, as without SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(entry())

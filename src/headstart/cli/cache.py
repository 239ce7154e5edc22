"""`headstart cache`: where the feature cache is, how big it is, and how to empty it.

The cache makes every run after the first cost no forward pass, so it grows with every backbone
and dataset tried; a user needs to see it and clear it without learning its file layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headstart.cli._common import print_json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="show where the feature cache is and how big; --clear empties it",
        description="Show the feature cache's folder (HEADSTART_CACHE_DIR, --cache-dir, or the "
        "user cache folder), its size and what it holds. --clear deletes every entry; the next "
        "run computes its features again.",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the cache folder (default: HEADSTART_CACHE_DIR or the user cache folder)",
    )
    parser.add_argument("--clear", action="store_true", help="delete every cached entry")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import HeadstartError
    from headstart.features.cache import FeatureCache, cache_size, default_cache_dir

    folder = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    size = cache_size(folder)
    facts: dict[str, object] = {"folder": str(folder), "bytes": size or 0}
    if size is not None:
        with FeatureCache(folder) as cache:
            if args.clear and not cache.writable:
                raise HeadstartError(
                    f"Cannot clear the feature cache {folder}: the folder cannot be written; "
                    "clear it where it is writable, or delete the folder by hand."
                )
            if args.clear:
                cache.clear()
            facts.update(cache.stats())
        facts["bytes"] = cache_size(folder) or 0
    if args.json:
        print_json({**facts, "cleared": bool(args.clear and size is not None)})
        return 0
    print(f"cache:        {folder}")
    if size is None:
        print("size:         empty (no run has cached anything here yet)")
        return 0
    if args.clear:
        print(f"cleared:      {_megabytes(size - int(str(facts['bytes'])))} freed")
    print(f"size:         {_megabytes(int(str(facts['bytes'])))}")
    print(f"vectors:      {facts['vectors']} in {facts['feature_sets']} feature set(s)")
    print(f"images:       {facts['images']} with stored facts, {facts['files']} files known")
    if not args.clear:
        print("(`headstart cache --clear` empties it; HEADSTART_CACHE_DIR moves it)")
    return 0


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"

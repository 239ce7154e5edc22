"""`headstart features DATA`: extract (or reuse) features, optionally export them as .npz.

Features need no labels: DATA is a labelled dataset (as ``train`` reads it), or image files and
folders of any shape, whose features are exported with their paths only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from headstart._text import count_noun
from headstart.cli._common import (
    add_csv_options,
    add_model_options,
    add_run_options,
    add_split_options,
    csv_columns,
    preprocess_overrides,
)

__all__ = ["register", "run"]

# Files left out that are named on stderr before the rest is counted.
_MAX_SKIPPED_SHOWN = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "features",
        help="extract backbone features into the cache, optionally export them",
        description="Run the backbone over every image in DATA (cached images cost nothing) and, "
        "with --out, write features, labels, splits, paths and class names to an .npz file "
        "(features and paths only for images without labels). With --model local-dir:RUN, the "
        "features are the run's own: those of the stage its head reads.",
    )
    parser.add_argument(
        "data",
        nargs="+",
        metavar="DATA",
        help="a labelled dataset (folder of class folders or split folders, or a CSV), or "
        "images without labels: a flat folder of images, or any image files and folders",
    )
    parser.add_argument("--out", help="write an .npz with features, labels, split, paths, classes")
    parser.add_argument(
        "--unlabelled",
        action="store_true",
        help="read DATA as images without labels even where it is a folder of folders",
    )
    add_model_options(parser)
    parser.add_argument(
        "--layer",
        help="pool features of this stage instead of the last (index or module name, as for "
        "train's --layer)",
    )
    add_split_options(parser)  # train's, so the .npz's split column is the split a run uses
    parser.add_argument("--batch-size", type=int, default=32)
    add_csv_options(parser)
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from headstart import distributed
    from headstart.backbones import create_backbone
    from headstart.backbones.layers import select_layer
    from headstart.data import collect_image_paths, load_dataset
    from headstart.errors import DataError
    from headstart.features.extract import extract_cached
    from headstart.runs import atomic_write

    # Under torchrun every rank extracts its shard; rank 0 alone writes the cache and the .npz.
    device = distributed.init_from_env(args.device)
    columns = csv_columns(args)
    labelled = bool(columns) or (
        not args.unlabelled and len(args.data) == 1 and _is_labelled(Path(args.data[0]))
    )
    dataset = None
    if labelled:
        dataset = load_dataset(
            args.data[0],
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            **columns,
        )
        samples = [(split, s) for split, items in dataset.splits.items() for s in items]
        paths = [s.path for _, s in samples]
        skipped = dataset.skipped
    else:
        paths, skipped = collect_image_paths(args.data)
        if not paths:
            given = ", ".join(repr(p) for p in args.data[:3]) + (
                " ..." if len(args.data) > 3 else ""
            )
            raise DataError(
                f"found no images in {given} ({len(skipped)} other files); pass image files or "
                "folders that hold them"
            )
    backbone = create_backbone(
        args.model, weights=args.weights, preprocess_overrides=preprocess_overrides(args)
    )
    if args.layer is not None:
        backbone = select_layer(backbone, args.layer)
    result = extract_cached(
        backbone,
        paths,
        use_cache=not args.no_cache,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        desc="extracting features",
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=device,
        engine=args.engine,
        quiet=args.quiet or not distributed.is_main(),
    )
    # An error above ends this rank; torchrun then stops the others.
    main = distributed.is_main()
    distributed.shutdown()
    if not main:
        return 0
    stage = backbone.spec.get("layer_module")
    n = len(result.paths)  # the readable ones: extraction's own count includes failed decodes
    print(
        f"{count_noun(n, 'image')}: {n - result.n_cached} computed, {result.n_cached} "
        f"from cache, {len(result.failures)} unreadable, {count_noun(len(skipped), 'other file')} "
        "skipped; "
        f"{backbone.num_features} features each" + (f" (stage {stage})" if stage else "")
    )
    left_out = [*((str(p), why) for p, why in result.failures.items())]
    left_out += [(str(s.path), s.reason) for s in skipped]
    for path, why in left_out[:_MAX_SKIPPED_SHOWN]:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if len(left_out) > _MAX_SKIPPED_SHOWN:
        print(f"skipped {len(left_out) - _MAX_SKIPPED_SHOWN} more", file=sys.stderr)
    if args.out:
        import io

        row = {p: i for i, p in enumerate(result.paths)}
        buf = io.BytesIO()
        if dataset is not None:
            kept = [(split, s) for split, s in samples if s.path in row]
            np.savez(
                buf,
                features=result.features[[row[s.path] for _, s in kept]],
                labels=np.array([s.label for _, s in kept], dtype=np.int64),
                split=np.array([split for split, _ in kept]),
                paths=np.array([str(s.path) for _, s in kept]),
                classes=np.array(dataset.classes),
            )
        else:
            order = [p for p in paths if p in row]  # the order given
            np.savez(
                buf,
                features=result.features[[row[p] for p in order]],
                paths=np.array([str(p) for p in order]),
            )
        out = Path(args.out)
        if out.suffix != ".npz":
            out = out.with_suffix(".npz")
        atomic_write(out, buf.getvalue())
        print(f"wrote {out}")
    return 0


def _is_labelled(path: Path) -> bool:
    """A CSV, or a folder holding folders (class or split folders): read as ``train`` reads it.
    A flat folder of images, or anything else, has no labels to read."""
    if path.is_file():
        return path.suffix.lower() == ".csv"
    if not path.is_dir():
        return False
    hidden = (".", "__MACOSX")  # as discovery: dotfiles and zip metadata are not classes
    return any(entry.is_dir() and not entry.name.startswith(hidden) for entry in path.iterdir())

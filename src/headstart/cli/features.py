"""`headstart features DATA`: extract (or reuse) features, optionally export them as .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from headstart.cli._common import add_model_options, add_run_options, preprocess_overrides

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "features",
        help="extract backbone features into the cache, optionally export them",
        description="Run the backbone over every image in DATA (cached images cost nothing) and, "
        "with --out, write features, labels, splits, paths and class names to an .npz file.",
    )
    parser.add_argument("data", help="image folder or CSV file")
    parser.add_argument("--out", help="write an .npz with features, labels, split, paths, classes")
    add_model_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, if one is made")
    parser.add_argument("--batch-size", type=int, default=32)
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from headstart import distributed
    from headstart.backbones import create_backbone
    from headstart.data import load_dataset
    from headstart.features.extract import extract_cached
    from headstart.runs import atomic_write

    # Under torchrun every rank extracts its shard; rank 0 alone writes the cache and the .npz.
    device = distributed.init_from_env(args.device)
    dataset = load_dataset(args.data, seed=args.seed)
    backbone = create_backbone(
        args.model, weights=args.weights, preprocess_overrides=preprocess_overrides(args)
    )
    samples = [(split, s) for split, items in dataset.splits.items() for s in items]
    result = extract_cached(
        backbone,
        [s.path for _, s in samples],
        use_cache=not args.no_cache,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        desc="extracting features",
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=device,
        quiet=args.quiet or not distributed.is_main(),
    )
    # An error above ends this rank; torchrun then stops the others.
    main = distributed.is_main()
    distributed.shutdown()
    if not main:
        return 0
    print(
        f"{len(result.paths)} images: {result.n_computed} computed, {result.n_cached} "
        f"from cache, {len(result.failures)} unreadable; {backbone.num_features} features each"
    )
    if args.out:
        row = {p: i for i, p in enumerate(result.paths)}
        kept = [(split, s) for split, s in samples if s.path in row]
        out = Path(args.out)
        if out.suffix != ".npz":
            out = out.with_suffix(".npz")
        import io

        buf = io.BytesIO()
        np.savez(
            buf,
            features=result.features[[row[s.path] for _, s in kept]],
            labels=np.array([s.label for _, s in kept], dtype=np.int64),
            split=np.array([split for split, _ in kept]),
            paths=np.array([str(s.path) for _, s in kept]),
            classes=np.array(dataset.classes),
        )
        atomic_write(out, buf.getvalue())
        print(f"wrote {out}")
    return 0

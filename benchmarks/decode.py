"""``decode="fast"`` against ``decode="exact"``: decoding speed and distance from timm's tensor.

Writes camera-sized photo-like JPEGs (smooth colour, shading and grain; see
``tests/_images.write_large_photo_jpeg``), then for each size decodes and preprocesses all of them
the way extraction does (:func:`headstart.features.batches.iter_batches`, decoding threads, one
per core) with each decode mode, interleaved and repeated, and prints the medians. It also prints
how far each mode's tensor is from timm's eval transform of the same file (``create_transform``
from ``resolve_data_config``), in grey levels (0..255) before normalisation, for grain from none
to near pure noise, and for real photographs (scikit-learn's two sample photos resized to camera
sizes, with and without grain, at JPEG qualities 50, 75 and 95 and each chroma subsampling; see
``tests/_images.write_sample_photo_jpeg``), summarised per subsampling and size.

    .venv/bin/python benchmarks/decode.py [--images 24] [--repeats 3]
    .venv/bin/python benchmarks/decode.py --smoke   # seconds: tiny sizes, one of each, for tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.models import get_pretrained_cfg

from headstart.data import load_image
from headstart.features.batches import iter_batches
from headstart.preprocess import Preprocess, resolve_preprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._images import SUBSAMPLING, write_large_photo_jpeg, write_sample_photo_jpeg  # noqa: E402

MODEL = "resnet50.a1_in1k"  # 224 px input, resize 235: JPEGs over 470 px are draft-decoded
SIZES = ((2000, 1500), (4000, 3000))
GRAIN = (0.0, 10.0, 25.0, 60.0, 120.0)
PHOTOS = ("china.jpg", "flower.jpg")
PHOTO_SIZES = ((2000, 1500), (1500, 2000), (4000, 3000))
PHOTO_GRAIN = (0.0, 8.0)
QUALITIES = (50, 75, 95)


def _rate(pre: Preprocess, paths: list[Path]) -> float:
    started = time.perf_counter()
    for _ in iter_batches(paths, pre, draft_size=pre.draft_size, batch_size=8, num_workers=None):
        pass
    return len(paths) / (time.perf_counter() - started)


def _distance(pre: Preprocess, cfg: dict, path: Path) -> tuple[float, float]:
    with Image.open(path) as img:
        ref = create_transform(**resolve_data_config({}, pretrained_cfg=cfg))(img.convert("RGB"))
    ours = pre(load_image(path, draft_size=pre.draft_size))
    grey = (ours - ref).abs() * torch.tensor(pre.std).view(3, 1, 1) * 255
    return float(grey.max()), float(grey.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--smoke", action="store_true", help="a seconds-long run of every code path (for tests)"
    )
    args = parser.parse_args(argv)
    sizes: tuple[tuple[int, int], ...] = SIZES
    grains: tuple[float, ...] = GRAIN
    photo_sizes: tuple[tuple[int, int], ...] = PHOTO_SIZES
    qualities: tuple[int, ...] = QUALITIES
    if args.smoke:
        args.images, args.repeats = 2, 1
        sizes, grains, photo_sizes, qualities = ((1000, 750),), (25.0,), ((1000, 750),), (75,)
    torch.set_num_threads(1)
    pretrained = get_pretrained_cfg(MODEL)
    if pretrained is None:
        raise SystemExit(f"timm has no pretrained config for {MODEL}")
    cfg = pretrained.to_dict()
    modes = {m: resolve_preprocess(cfg, overrides={"decode": m}) for m in ("exact", "fast")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"speed ({MODEL}: {modes['fast'].describe().splitlines()[1].strip()})")
        print("| JPEG size | exact img/s | fast img/s | speed-up |")
        print("|---|---|---|---|")
        for width, height in sizes:
            paths = [
                write_large_photo_jpeg(folder / f"{width}_{i}.jpg", (width, height), seed=i)
                for i in range(args.images)
            ]
            rates: dict[str, list[float]] = {"exact": [], "fast": []}
            for _ in range(args.repeats):
                for mode, pre in modes.items():
                    rates[mode].append(_rate(pre, paths))
            exact, fast = (statistics.median(rates[m]) for m in ("exact", "fast"))
            print(f"| {width}x{height} | {exact:.1f} | {fast:.1f} | {fast / exact:.2f}x |")
        print("\ndistance from timm's eval transform, grey levels (max / mean)")
        print("| grain std | JPEG size | exact | fast |")
        print("|---|---|---|---|")
        for grain in grains:
            for width, height in sizes:
                path = write_large_photo_jpeg(
                    folder / f"grain_{grain:g}_{width}.jpg", (width, height), noise=grain, seed=3
                )
                cells = []
                for pre in modes.values():
                    most, mean = _distance(pre, cfg, path)
                    cells.append(f"{most:.0f} / {mean:.2f}")
                print(f"| {grain:g} | {width}x{height} | {cells[0]} | {cells[1]} |")
        print("\nreal photographs, fast decode, grey levels: worst max / worst mean over")
        print(f"{len(PHOTOS)} photos x grain {PHOTO_GRAIN} x quality {qualities}")
        print("| subsampling | JPEG size | fast |")
        print("|---|---|---|")
        for subsampling in SUBSAMPLING:
            for width, height in photo_sizes:
                worst = (0.0, 0.0)
                for photo in PHOTOS:
                    for grain in PHOTO_GRAIN:
                        for quality in qualities:
                            path = write_sample_photo_jpeg(
                                folder / "photo.jpg",
                                photo,
                                (width, height),
                                quality=quality,
                                subsampling=subsampling,
                                grain=grain,
                            )
                            most, mean = _distance(modes["fast"], cfg, path)
                            worst = (max(worst[0], most), max(worst[1], mean))
                print(f"| {subsampling} | {width}x{height} | {worst[0]:.0f} / {worst[1]:.2f} |")


if __name__ == "__main__":
    main()

"""The run's pictures drawn with matplotlib: curves.png (accuracy and loss, train vs validation,
with the kept epoch marked), the report's histogram of typicality, and compare.png (backbones'
held-out accuracy against their speed)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.runs import atomic_write

__all__ = ["TYPICALITY_BINS", "plot_comparison", "plot_curves", "plot_typicality"]

TYPICALITY_BINS = 20
"""Bins of width 0.05 over [0, 1]: the default threshold is the first bin's edge."""


def plot_curves(history: Sequence[dict[str, float]], best_epoch: int, out: Path) -> Path:
    """Draw the two panels people look at first, and save them as a PNG.

    matplotlib with the Agg backend: renders without a display, and everyone can read its plots.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, key, title in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        ax.plot(epochs, [row[key] for row in history], label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
            best = next(row for row in history if row["epoch"] == best_epoch)
            ax.plot(
                [best_epoch],
                [best[f"val_{key}"]],
                "o",
                color="black",
                label=f"kept: epoch {best_epoch}",
            )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save_png(fig, out)


def plot_typicality(typicality: Sequence[float], threshold: float, out: Path) -> Path:
    """A histogram of images' typicality, the threshold marked, saved as a PNG.

    Typicality is the share of held-out known images less typical than an image, so images like
    the training ones spread evenly over [0, 1]: the dashed level is what they would fill each
    bin to. A heap at the left is images the model finds unusual; the bars left of the threshold
    (red) are the ones ``predict`` flags ``unknown``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    values = np.clip(np.asarray(typicality, dtype=np.float64), 0.0, 1.0)
    below, above = values[values < threshold], values[values >= threshold]
    edges = np.linspace(0.0, 1.0, TYPICALITY_BINS + 1)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    ax.hist(
        [below, above],
        bins=edges.tolist(),
        stacked=True,
        color=["#d62728", "#1f77b4"],
        edgecolor="white",
        label=[f"flagged unknown ({len(below)})", f"accepted ({len(above)})"],
    )
    ax.axhline(
        len(values) / TYPICALITY_BINS,
        color="grey",
        linestyle=":",
        linewidth=1,
        label="evenly spread, as held-out known images are",
    )
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2)
    ax.annotate(
        f"threshold {threshold:g}",
        (threshold, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -12),
        textcoords="offset points",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("typicality (share of held-out known images less typical)")
    ax.set_ylabel("images")
    ax.grid(alpha=0.3, axis="y")
    # Below the axes, where it hides no bar.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return _save_png(fig, out)


def plot_comparison(points: Sequence[dict[str, object]], recommended: str, out: Path) -> Path:
    """compare.png: held-out accuracy against extraction images per second, one point a backbone.

    The trade-off a user chooses on is speed against accuracy, so those are the axes (speed on a
    log scale: backbones differ by orders of magnitude); the recommended one is ringed. Each point
    is ``{"model", "accuracy", "images_per_second", "pair"}``; unmeasured ones are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for p in points:
        rate, accuracy = p.get("images_per_second"), p.get("accuracy")
        if not isinstance(rate, (int, float)) or not isinstance(accuracy, (int, float)):
            continue
        pair = bool(p.get("pair"))
        ax.plot([rate], [accuracy], "s" if pair else "o", color="tab:grey" if pair else "tab:blue")
        ax.annotate(
            str(p["model"]), (rate, accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8
        )
        if p["model"] == recommended:
            ring: dict[str, Any] = {
                "markerfacecolor": "none",
                "markeredgecolor": "tab:red",
                "markeredgewidth": 2,
            }
            ax.plot(
                [rate], [accuracy], "o", markersize=16, label=f"recommended: {recommended}", **ring
            )
    ax.set_xscale("log")
    ax.set_xlabel("extraction, images per second (this machine)")
    ax.set_ylabel("held-out accuracy (linear head)")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _save_png(fig, out)


def _save_png(fig: Any, out: Path) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically: a reader never sees half a
    picture, two runs saving the same one never mix theirs, and a full disk is one line."""
    from matplotlib import pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(out, buf.getvalue())
    return out

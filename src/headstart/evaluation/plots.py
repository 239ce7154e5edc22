"""The run's pictures drawn with matplotlib: curves.png (accuracy and loss, train vs validation,
with the kept epoch marked) and the report's histogram of typicality."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["TYPICALITY_BINS", "plot_curves", "plot_typicality"]

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
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


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
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out

"""curves.png: accuracy and loss, train vs validation, with the kept epoch marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["plot_curves"]


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

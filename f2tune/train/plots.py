"""A loss-curve picture beside the run: what people look at first, without starting TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path

CURVES = ("train/loss", "val/loss")


def read_curves(csv_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) points per curve from every `version_*/metrics.csv` (a resumed run has several)."""
    curves: dict[str, list[tuple[int, float]]] = {name: [] for name in CURVES}
    for metrics in sorted(csv_dir.glob("version_*/metrics.csv")):
        with metrics.open() as rows:
            for row in csv.DictReader(rows):
                for name in CURVES:
                    if row.get(name):
                        curves[name].append((int(row["step"]), float(row[name])))
    return {name: sorted(points) for name, points in curves.items() if points}


def plot_loss_curves(csv_dir: Path, out: Path) -> Path | None:
    """Write `out` (PNG) with train and validation loss against optimizer step; None without data."""
    curves = read_curves(csv_dir)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    for name, points in curves.items():
        steps, values = zip(*points)
        axes.plot(steps, values, marker="o" if name == "val/loss" else None, markersize=3, label=name)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out

"""Matplotlib helpers: one look for every figure, saved atomically as PNG and SVG.

Figures are built with `matplotlib.figure.Figure`, not pyplot, and styled inside `matplotlib.rc_context`, so
importing this module neither switches the user's backend (a notebook keeps its inline one) nor changes their
global rcParams.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..io import atomic_write_bytes

__all__ = ["new_figure", "save_figure", "plot_umap"]

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
STYLE = {"axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 110,
         "axes.grid": True, "grid.alpha": 0.3, "svg.fonttype": "none", "svg.hashsalt": "quanta_interp"}


def new_figure(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = (5.0, 3.8)):
    """A figure and its axes, sized per panel.

    Parameters
    ----------
    size : (float, float)
        Width and height of one panel, in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : object ndarray (nrows, ncols) of Axes
        Always 2-D, even for one panel: `axes[0, 0]`.
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
        return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_figure(fig, stem: str | os.PathLike, *, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write `stem.png` and `stem.svg` atomically (the figure is garbage-collected like any object).

    PNG at 130 dpi; SVG keeps text as text and carries no date, so reruns give identical files.

    Parameters
    ----------
    stem : str or PathLike
        Output path without extension; each format's suffix replaces any suffix it has, so a dot in
        the file name ("alpha0.4") loses what follows it.
    formats : tuple of str
        Matplotlib format names, one file each.

    Returns
    -------
    list of Path
        The files written, in `formats` order.

    Raises
    ------
    ValueError
        A format matplotlib cannot write.
    """
    stem = Path(stem)
    paths = []
    with matplotlib.rc_context(STYLE):
        fig.tight_layout()
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=130 if fmt == "png" else None,
                        metadata={"Date": None} if fmt == "svg" else None)
            paths.append(atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buf.getvalue()))
    return paths


def plot_umap(stem: str | Path, xy: np.ndarray, labels: np.ndarray, *, top: int = 8, title: str = "") -> None:
    """`stem.png`: a 2-D embedding (n × 2 floats, e.g. `quanta.clustering.umap_embedding` of gradients) with
    the `top` largest of the int (n,) `labels` coloured, the rest grey."""
    fig, ax = new_figure(size=(5.0, 4.4))
    ax = ax[0, 0]
    order = np.argsort(-np.bincount(labels))[:top]
    rest = ~np.isin(labels, order)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=4, c="0.8", lw=0)
    for rank, c in enumerate(order):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, lw=0, label=f"#{rank + 1} ({sel.sum()})")
    ax.set(title=title or "UMAP of per-token gradients", xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    save_figure(fig, stem, formats=("png",))


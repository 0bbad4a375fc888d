"""Figures (PNG + SVG) and static self-contained HTML pages. Analysis code plots; model code never does."""

from .figures import new_figure, save_figure

__all__ = ["new_figure", "save_figure"]

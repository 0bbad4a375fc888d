"""Figures (PNG + SVG) and static self-contained HTML pages. Analysis code plots; model code never does."""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "figures": ["new_figure", "save_figure", "plot_umap"],
    "html": ["json_for_script", "page", "write_page"],
})

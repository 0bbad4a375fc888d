"""Figures (PNG + SVG) and static self-contained HTML pages. Analysis code plots; model code never does."""

from .figures import new_figure, save_figure
from .html import json_for_script, page, write_page

__all__ = ["new_figure", "save_figure", "json_for_script", "page", "write_page"]

"""quanta_interp: mechanistic interpretability of neural scaling laws (quanta, lottery tickets,
language statistics, PassUntil) over one shared core."""

__version__ = "0.1.0"

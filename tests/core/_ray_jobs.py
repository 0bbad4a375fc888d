"""Module-level run functions for the executor tests (Ray and process pools must import them)."""

import os
import time
from pathlib import Path


def sleepy(config, run_dir):
    """Writes its pid, then sleeps; the test kills the worker of run 0 on its first attempt."""
    marks = Path(config["marks"])
    attempt = len(list(marks.glob(f"run{config['i']}-*")))
    (marks / f"run{config['i']}-{attempt}.pid").write_text(str(os.getpid()))
    time.sleep(config["sleep"] if config["i"] == 0 and attempt == 0 else 0.1)
    return {"i": config["i"], "attempt": attempt}


def fails_on_odd(config, run_dir):
    """Run i succeeds for even i and always raises for odd i."""
    if config["i"] % 2:
        raise ValueError(f"boom {config['i']}")
    return {"i": config["i"]}

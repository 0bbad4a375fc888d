"""A sweep run in a subprocess by test_io; each run logs its start, sleeps, then finishes."""

import sys
import time
from pathlib import Path

from quanta_interp.executors import map_runs


def slow_square(config, run_dir):
    with open(Path(sys.argv[1]) / "starts.log", "a") as f:
        f.write(f"{config['i']}\n")
    run_dir.log_metrics({"step": 0, "i": config["i"]})
    time.sleep(float(sys.argv[2]))
    return {"square": config["i"] ** 2}


if __name__ == "__main__":
    map_runs(slow_square, [{"i": i} for i in range(8)], root=Path(sys.argv[1]) / "sweep", name="squares")

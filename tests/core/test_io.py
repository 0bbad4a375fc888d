import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quanta_interp.executors import map_runs
from quanta_interp.io import RunDir, Sweep, atomic_write_json, read_json

JOB = Path(__file__).with_name("_sweep_job.py")


def test_sweep_killed_with_sigkill_resumes_only_unfinished_runs(tmp_path):
    proc = subprocess.Popen([sys.executable, str(JOB), str(tmp_path), "0.4"], stderr=subprocess.DEVNULL)
    runs = tmp_path / "sweep" / "runs"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(runs.glob("*/result.json"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(runs.glob("*/result.json")))
    assert 3 <= done_before < 8, "the kill must land mid-sweep"
    starts_before = (tmp_path / "starts.log").read_text().split()

    subprocess.run([sys.executable, str(JOB), str(tmp_path), "0.0"], check=True, stderr=subprocess.DEVNULL)
    starts = (tmp_path / "starts.log").read_text().split()
    redone = starts[len(starts_before):]
    assert len(redone) == 8 - done_before  # finished runs are not started again
    reopened = Sweep.open(tmp_path / "sweep")  # from the manifest alone, as the analysis commands do
    assert reopened.name == "squares" and reopened.configs == [{"i": i} for i in range(8)]
    assert [r["square"] for r in reopened.results()] == [i * i for i in range(8)] and reopened.pending() == []
    assert not list(tmp_path.rglob("*.tmp"))  # no temp files left behind


def _cube(config, run_dir):
    import torch

    return {"cube": config["x"] ** 3, "has_dir": run_dir is not None, "threads": torch.get_num_threads()}


def test_processes_backend_matches_serial(tmp_path):
    import torch

    configs = [{"x": x} for x in range(6)]
    serial = map_runs(_cube, configs, backend="serial")
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # forked workers would inherit this
    try:
        procs = map_runs(_cube, configs, backend="processes", workers=2, root=tmp_path / "p")
    finally:
        torch.set_num_threads(threads)
    assert [r["cube"] for r in serial] == [r["cube"] for r in procs] == [x ** 3 for x in range(6)]
    assert all(r["has_dir"] for r in procs) and not any(r["has_dir"] for r in serial)
    # workers share the cores instead of each taking all of them (oversubscription made sweeps ~8x slower)
    assert {r["threads"] for r in procs} == {max(1, (os.cpu_count() or 1) // 2)}


def test_unknown_backend_and_foreign_sweep_folder_rejected(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of serial, processes"):
        map_runs(_cube, [{"x": 1}], backend="slurm")
    Sweep(tmp_path, [{"x": 1}], name="a")
    with pytest.raises(ValueError, match="holds a different sweep"):
        Sweep(tmp_path, [{"x": 2}], name="a")
    with pytest.raises(FileNotFoundError, match=r"no manifest.json\); run it first"):
        Sweep.open(tmp_path / "elsewhere", hint="run it first")


def test_run_dir_round_trip_and_config_guard(tmp_path):
    import torch

    rd = RunDir(tmp_path / "r", {"width": 4})
    rd.log_metrics({"step": 1, "loss": 0.5})
    with open(rd.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a line cut by a kill
    assert rd.metrics() == [{"step": 1, "loss": 0.5}]
    rd.save_weights({"w": torch.arange(3.0)})
    assert torch.equal(rd.load_weights()["w"], torch.arange(3.0))
    assert not rd.done
    rd.write_result({"loss": 0.1})
    assert rd.done and rd.result() == {"loss": 0.1}
    with pytest.raises(ValueError, match="different config"):
        RunDir(tmp_path / "r", {"width": 8})


def test_atomic_json_converts_numpy(tmp_path):
    import numpy as np

    atomic_write_json(tmp_path / "a.json", {"x": np.float32(1.5), "v": np.arange(3), "t": (1, 2), "n": float("nan")})
    assert read_json(tmp_path / "a.json") == {"x": 1.5, "v": [0, 1, 2], "t": [1, 2], "n": None}


def test_figures_leave_the_users_matplotlib_alone_and_svgs_are_byte_identical(tmp_path):
    import subprocess
    import sys
    code = (
        "import matplotlib; matplotlib.use('svg'); import matplotlib as m\n"
        "before = (m.get_backend(), dict(m.rcParams))\n"
        "from quanta_interp.report import new_figure, save_figure\n"
        "for name in ('a', 'b'):\n"
        "    fig, axes = new_figure(2, 1)\n"
        "    axes[0, 0].plot([1, 2, 3], [3, 1, 2]); axes[0, 1].loglog([1, 10], [1, 0.1])\n"
        f"    save_figure(fig, {str(tmp_path)!r} + '/' + name)\n"
        "assert (m.get_backend(), dict(m.rcParams)) == before, 'backend or rcParams changed'\n"
        "assert fig.axes[0].get_lines()[0].get_color() == '#0072B2'  # our palette, inside the figure only\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from quanta_interp.executors import map_runs

ray = pytest.importorskip("ray", reason="Ray is part of the [test] extra; install it with pip install -e '.[test]'")
sys.path.insert(0, os.path.dirname(__file__))
import _ray_jobs  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(__file__)}})
    yield ray
    ray.shutdown()


def test_sparse_parity_sweep_gives_identical_numbers_on_serial_processes_and_ray(local_ray, tmp_path):
    from quanta_interp.sparse_parity.config import SparseParityConfig
    from quanta_interp.sparse_parity.sweep import run_group, sweep_configs

    base = SparseParityConfig(n_tasks=4, n_bits=8, k=2, zipf_exponent=1.5, width=8, steps=40, batch_size=64, lr=1e-2,
                              log_every=20, eval_samples=64)
    groups = sweep_configs("N", base, values=[4, 16], seeds=[0, 1])
    serial = map_runs(run_group, groups, backend="serial")
    procs = map_runs(run_group, groups, backend="processes", workers=2)
    on_ray = map_runs(run_group, groups, backend="ray", root=tmp_path / "ray")
    losses = [[m["test_loss"] for m in g["members"]] for g in serial]
    assert losses == [[m["test_loss"] for m in g["members"]] for g in procs]
    assert losses == [[m["test_loss"] for m in g["members"]] for g in on_ray]
    assert len({x for g in losses for x in g}) == 4  # the runs really differ
    assert len(list((tmp_path / "ray" / "runs").glob("*/result.json"))) == len(groups)


def test_killed_worker_is_retried_and_nothing_is_lost(local_ray, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    configs = [{"i": i, "sleep": 30, "marks": str(marks)} for i in range(4)]
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=map_runs(_ray_jobs.sleepy, configs, backend="ray",
                                                                     root=tmp_path / "sweep", retries=2)))
    thread.start()
    pid_file = marks / "run0-0.pid"
    deadline = time.time() + 60
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    thread.join(timeout=120)
    assert [r["i"] for r in out["r"]] == [0, 1, 2, 3]
    assert out["r"][0]["attempt"] == 1  # run 0 ran again after its worker died
    assert len(list((tmp_path / "sweep" / "runs").glob("*/result.json"))) == 4


def test_resources_no_node_offers_is_one_line_and_starts_nothing(local_ray, tmp_path):
    with pytest.raises(ValueError, match="no Ray node offers"):
        map_runs(_ray_jobs.sleepy, [{"i": 1}], backend="ray",
                 resources={"num_gpus": 1}, root=tmp_path / "gpu")
    assert not (tmp_path / "gpu").exists()


def test_unreachable_address_is_one_line():
    code = ("from quanta_interp.executors import map_runs\n"
            "try:\n map_runs(print, [{}], backend='ray', address='127.0.0.1:9')\n"
            "except ValueError as e:\n print('ValueError:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ValueError: Ray address '127.0.0.1:9' is unreachable" in proc.stdout


def test_sharded_gradient_capture_on_ray_equals_local_byte_for_byte(local_ray, tmp_path):
    from functools import partial

    import numpy as np

    from quanta_interp import lm
    from quanta_interp.capture import capture_gradients, capture_gradients_sharded

    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 23, size=40) for _ in range(3)]
    run = tmp_path / "model"
    lm.train(lm.TrainConfig(**{"n_layers": 1, "d_model": 16, "n_heads": 2, "n_ctx": 16, "d_vocab": 23, "steps": 2, "batch_size": 4,
              "eval_every": 2, "checkpoint_every": 2}), np.concatenate(docs), run_dir=run, progress=False)
    # windows of 3 … 10 tokens: batches mix lengths, so shards must hold whole batches to match
    targets = np.array([(d, p - 3 - p % 8, p) for d in range(3) for p in range(11, 40, 3)])
    kw = {"projection_dim": 4, "batch_tokens": 32, "seed": 3}
    local = capture_gradients(lm.load(str(run)).bridge, docs, targets, tmp_path / "local", show_progress=False, **kw)
    sharded = capture_gradients_sharded(partial(lm.load, str(run)), docs, targets, tmp_path / "sharded", shards=3,
                                        backend="ray", **kw)
    assert sharded.meta["shards"] == 3 and local.ok.all()
    for name in ("gradients", "status", "losses", "targets"):
        assert (tmp_path / "local" / f"{name}.npy").read_bytes() == (tmp_path / "sharded" / f"{name}.npy").read_bytes()


def test_failing_run_is_retried_then_reported_and_finished_runs_are_kept(local_ray, tmp_path):
    with pytest.raises(RuntimeError, match=r"1 run\(s\) failed after 1 retries.*ValueError: boom 1"):
        map_runs(_ray_jobs.fails_on_odd, [{"i": 0}, {"i": 1}, {"i": 2}], backend="ray", root=tmp_path, retries=1)
    assert len(list((tmp_path / "runs").glob("*/result.json"))) == 2

"""Sparse-parity sweeps: kill-and-resume, the analysis functions, and the CLI."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from quanta_interp.cli import main
from quanta_interp.sparse_parity.config import SparseParityConfig
from quanta_interp.sparse_parity.sweep import (
    fit_exponent,
    learning_order,
    run_sweep,
    steps_to_learn_fit,
    sweep_configs,
)
from quanta_interp.sparse_parity.task import MultitaskSparseParity, predictions

BASE = SparseParityConfig(n_tasks=6, n_bits=8, k=3, zipf_exponent=1.5, width=8, steps=120, batch_size=200, lr=1e-2,
                          log_every=40, eval_samples=50)
JOB = ("import sys; from quanta_interp.sparse_parity import SparseParityConfig, run_sweep; "
       f"run_sweep('N', SparseParityConfig(**{BASE.to_dict()!r}), [4, 8], [0, 1, 2, 3, 4, 5], sys.argv[1])")


def test_sweep_killed_with_sigkill_resumes_only_unfinished_groups(tmp_path):
    root = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(root)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(root.glob("runs/*/result.json"))) < 1:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in root.glob("runs/*/result.json")}
    assert 1 <= len(finished) < 6, "the kill must land mid-sweep"

    results = run_sweep("N", BASE, [4, 8], [0, 1, 2, 3, 4, 5], root)
    assert len(results) == 12 and sorted({r["config"]["seed"] for r in results}) == list(range(6))
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "finished groups were redone"
    assert len(list(root.glob("runs/*/result.json"))) == 6
    with pytest.raises(ValueError, match="holds a different sweep"):
        run_sweep("N", BASE.replace(lr=0.1), [4, 8], [0, 1, 2, 3, 4, 5], root)


def test_sweep_configs_group_members_per_seed():
    groups = sweep_configs("D", BASE.replace(width=16), [100, 1000], [3, 4])
    assert [g.to_dict()["members"] for g in groups] == [
        [{"width": 16, "seed": s, "n_train": d} for d in (100, 1000)] for s in (3, 4)]
    assert all(g.to_dict()["steps"] == 120 and "seed" not in g.to_dict() for g in groups)
    assert [m.n_train for m in groups[1].members] == [100, 1000] and groups[1].members[0].seed == 4
    with pytest.raises(ValueError, match="kind must be one of N, D, S"):
        sweep_configs("X", BASE, [1], [0])


def _fake(width, loss, learned=0, steps=None, n_train=None):
    return {"n_params": width * 10, "test_loss": loss, "n_learned": learned, "steps_to_learn": steps or [],
            "config": {"n_train": n_train, "width": width}}


def test_fits_recover_known_exponents_and_learning_order():
    widths = np.array([8, 16, 32, 64, 128])
    res = [_fake(w, 3.0 * (w * 10.0) ** -0.5 * f, int(w / 8)) for w in widths for f in (0.98, 1.02)]
    f = fit_exponent(res, "N", n_boot=200)
    assert f.fit.exponent == pytest.approx(0.5, abs=1e-6) and f.x == (widths * 10).tolist()
    assert f.n_learned == [1, 2, 4, 8, 16] and len(f.range_sensitivity) >= 4
    assert predictions(1.5).to_dict() == {"alpha": 0.5, "alpha_N": 0.5, "alpha_D": pytest.approx(1 / 3),
                                          "alpha_S": pytest.approx(1 / 3)}
    probs = MultitaskSparseParity(10, 8, 3, 1.5).probs
    steps = [int(round(40 / p)) for p in probs[:7]] + [None] * 3  # steps ∝ 1/p_i for the 7 learned
    order = learning_order({"steps_to_learn": steps})
    assert order.learned_ids == list(range(7)) and order.spearman_rank_vs_steps == pytest.approx(1.0)
    assert steps_to_learn_fit({"steps_to_learn": steps}, probs).loglog_slope == pytest.approx(-1, abs=0.01)
    # first evaluation at step 500: the subtasks learned before it are recorded at 500 (left-censored)
    censored = [max(500, t) if t else None for t in steps]
    fit = steps_to_learn_fit({"steps_to_learn": censored, "curve": {"step": [0, 500, 1000]}}, probs)
    assert fit.n_censored == 3 and fit.loglog_slope == pytest.approx(-1, abs=0.01)
    assert steps_to_learn_fit({"steps_to_learn": censored}, probs).loglog_slope > -0.8  # kept, they flatten it


def test_cli_train_neurons_sweep_fit_and_bad_input(tmp_path, capsys):
    tiny = ["--n-tasks", "4", "--n-bits", "6", "--width", "12", "--steps", "60", "--batch-size", "200",
            "--log-every", "30", "--eval-samples", "50"]
    assert main(["sparse-parity", "train", *tiny, "--out", str(tmp_path / "run")]) == 0
    assert main(["sparse-parity", "neurons", str(tmp_path / "run"), "--samples", "50"]) == 0
    neurons = json.loads((tmp_path / "run" / "neurons.json").read_text())
    assert np.array(neurons["increase"]).shape == (12, 4) and len(neurons["carriers"]) == 4
    assert (tmp_path / "run" / "neurons.png").exists() and (tmp_path / "run" / "neurons.svg").exists()

    sweep = tmp_path / "sweep"
    assert main(["sparse-parity", "sweep", *tiny, "--kind", "N", "--values", "2,4,8,16", "--out", str(sweep)]) == 0
    assert main(["sparse-parity", "fit", str(sweep), "--out", str(tmp_path / "fit")]) == 0
    fits = json.loads((tmp_path / "fit" / "fit.json").read_text())
    (fit,) = fits.values()
    assert fit["kind"] == "N" and len(fit["x"]) == 4 and fit["theory"]["alpha_N"] == pytest.approx(0.5)
    assert set(fit["fit"]) >= {"exponent", "exponent_ci", "r2"} and (tmp_path / "fit" / "loss_vs_N.png").exists()

    capsys.readouterr()
    assert main(["sparse-parity", "train", *tiny, "--k", "7", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "k must be ≤ n_bits (6), got 7" in err and len(err.splitlines()) == 1
    assert main(["sparse-parity", "sweep", *tiny, "--lr", "0.5", "--values", "2,4,8,16", "--out", str(sweep)]) == 2
    assert "holds a different sweep" in capsys.readouterr().err
    assert main(["sparse-parity", "train", *tiny, "--width", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "width must be a positive integer" in capsys.readouterr().err


def _curve(width, loss_at, steps=(0, 1000, 2000, 4000, 8000, 16000)):
    """A fake member whose logged test loss is loss_at(step) (step 0: 1 bit)."""
    losses = [1.0] + [loss_at(s) for s in steps[1:]]
    return {"n_params": width * 10, "test_loss": losses[-1], "n_learned": 1, "steps_to_learn": [],
            "config": {"n_train": width, "width": width}, "curve": {"step": list(steps), "test_loss": losses}}


def test_late_slope_marks_step_limited_members_and_the_fit_leaves_them_out():
    widths = [8, 16, 32, 64, 128]
    # converged widths sit on L = 10·N^-0.5 (N = 10·width); the two widest still fall as step^-0.4
    plateau = {w: 10 * (w * 10.0) ** -0.5 for w in widths}
    res = [_curve(w, lambda s, w=w: plateau[w]) for w in widths[:3]]
    res += [_curve(w, lambda s, w=w: plateau[w] * (16000 / s) ** 0.4) for w in widths[3:]]
    from quanta_interp.sparse_parity.sweep import late_slope
    assert [round(late_slope(r), 6) for r in res] == [0, 0, 0, 0.4, 0.4]
    assert np.isnan(late_slope({"curve": {"step": [0, 100], "test_loss": [1.0, 0.5]}}))  # one point after step 0
    converged = fit_exponent(res, "N", max_late_slope=0.1, n_boot=100)
    assert converged.fit.exponent == pytest.approx(0.5, abs=1e-9) and converged.fit.n_points == 3
    assert converged.late_slope == pytest.approx([0, 0, 0, 0.4, 0.4], abs=1e-9)
    assert fit_exponent(res, "N", n_boot=100).fit.n_points == 5  # no filter: all widths
    steps = fit_exponent(res[3:4], "S", n_boot=100)  # the logged curve of one member
    assert steps.loss_kind == "final" and steps.fit.exponent == pytest.approx(0.4, abs=1e-9)
    with pytest.raises(ValueError, match=r"only 2 of 4 points converged in steps \(late slope ≤ 0.1\); train longer"):
        fit_exponent(res[1:], "N", max_late_slope=0.1)
    # early stopping: the lowest logged loss, not the last one
    over = [_curve(d, lambda s, d=d: 2 * d ** -0.3 * (1 + (s == 16000))) for d in (1000, 2000, 4000, 8000)]
    best = fit_exponent(over, "D", loss="best", n_boot=100)
    assert best.fit.exponent == pytest.approx(0.3, abs=1e-9) and best.loss_kind == "best"
    assert fit_exponent(over, "D", n_boot=100).loss == pytest.approx([4 * d ** -0.3 for d in (1000, 2000, 4000, 8000)])
    with pytest.raises(ValueError, match="loss must be one of final, best"):
        fit_exponent(over, "D", loss="min")


def test_finite_task_exponent_is_alpha_for_many_subtasks_and_larger_when_truncated():
    from quanta_interp.sparse_parity.sweep import finite_task_exponent
    n = np.array([4, 8, 16, 32])  # learned ∝ N
    many = MultitaskSparseParity(3000, 30, 3, 2.0).probs
    assert finite_task_exponent(many, n, n * 100) == pytest.approx(1.0, abs=0.05)  # ≈ α = 1 when n ≪ n_tasks
    few = MultitaskSparseParity(40, 20, 3, 2.0).probs
    assert finite_task_exponent(few, n, n * 100) > 1.3  # 32 of 40 learned: the tail collapses
    with pytest.raises(ValueError, match="unlearned mass is 0"):
        finite_task_exponent(few, [4, 40], [1, 2])

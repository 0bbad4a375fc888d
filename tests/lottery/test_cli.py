import json

import numpy as np
import pytest

from quanta_interp.cli import main
from quanta_interp.io import read_json

SWEEP = ["--widths", "2,4,8", "--activations", "silu,relu", "--adam-steps", "150", "--lbfgs-steps", "20",
         "--min-seeds", "4", "--max-seeds", "12", "--n-train", "50", "--n-test", "200"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("lottery")
    assert main(["lottery", "sweep", "--out", str(out), *SWEEP]) == 0
    return out


def test_sweep_writes_one_resumable_run_per_activation_and_width(sweep, capsys):
    manifest = read_json(sweep / "manifest.json")
    assert sorted((r["config"]["activation"], r["config"]["width"]) for r in manifest["runs"]) == [
        ("relu", 2), ("relu", 4), ("relu", 8), ("silu", 2), ("silu", 4), ("silu", 8)]
    run = sweep / "runs" / manifest["runs"][0]["key"]
    result = read_json(run / "result.json")
    assert len(result["test_mse"]) == len(result["train_mse"]) == result["n_seeds"] == 12
    mtime = (run / "result.json").stat().st_mtime_ns
    assert main(["lottery", "sweep", "--out", str(sweep), *SWEEP]) == 0  # resumes: nothing is retrained
    assert (run / "result.json").stat().st_mtime_ns == mtime


def test_fit_peaks_dissect_neurons_write_their_outputs(sweep, tmp_path):
    assert main(["lottery", "fit", "--out", str(sweep)]) == 0
    scaling = read_json(sweep / "scaling.json")
    assert scaling["table"]["relu"]["widths"] == [2, 4, 8]
    silu = scaling["fits"]["silu"]
    assert silu["exponent"] is not None and silu["exponent_ci"][0] <= silu["exponent"] <= silu["exponent_ci"][1]
    assert (sweep / "scaling.png").stat().st_size > 0 and (sweep / "scaling.svg").exists()

    assert main(["lottery", "peaks", str(sweep), "--width", "2", "--out", str(tmp_path / "p")]) == 0
    peaks = read_json(tmp_path / "p" / "peaks.json")
    assert sum(p["count"] for p in peaks["peaks"]) == peaks["n_seeds"] == 12
    assert len(peaks["solutions"]) == len(peaks["peaks"]) and (tmp_path / "p" / "peaks.png").exists()

    assert main(["lottery", "dissect", str(sweep), "--width", "8", "--out", str(tmp_path / "d")]) == 0
    d = read_json(tmp_path / "d" / "dissect.json")
    assert d["width"] == 8 and 2 * d["n_pairs"] + len(d["unpaired"]) == 8
    assert np.asarray(d["taylor_x0_x2_x4"]).reshape(-1, 3).shape[0] == d["n_pairs"]

    assert main(["lottery", "neurons", str(sweep), "--width", "4", "--activation", "relu", "--seed-index", "1",
                 "--out", str(tmp_path / "n")]) == 0
    n = json.loads((tmp_path / "n" / "neurons.json").read_text())
    assert n["seed_index"] == 1 and n["activation_fn"] == "relu" and np.asarray(n["contribution"]).shape == (4, 101)
    assert min(min(row) for row in n["activation"]) >= 0  # ReLU activations are never negative


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--widths", "0,4"], "widths must be positive integers"),
    (["sweep", "--activations", "swish"], "activation must be one of"),
    (["sweep", "--interval", "1,-1"], "interval must be"),
    (["sweep", "--target", "cosh"], "target must be"),
    (["dissect", "RUN", "--width", "3"], "no run with width=3"),
])
def test_bad_input_exits_2_with_one_line(argv, message, sweep, tmp_path, capsys):
    argv = [str(sweep) if a == "RUN" else a for a in argv]
    assert main(["lottery", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err

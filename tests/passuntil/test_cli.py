import json

import numpy as np
import pytest
import torch

from quanta_interp.cli import main
from quanta_interp.io import read_json


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """Three tiny char models (3 training steps each) and single-character-answer instances."""
    from quanta_interp import lm
    from quanta_interp.passuntil import addition_split, addition_text
    from quanta_interp.passuntil.tasks import addition_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and far faster on shared cores
    root = tmp_path_factory.mktemp("family")
    tok = addition_tokenizer()
    tokens = np.asarray(tok.encode(addition_text(addition_split(300, 5, digits=2)[0])))
    for width in (8, 16, 24):
        lm.train(lm.TrainConfig(n_layers=1, d_model=width, n_heads=2, n_ctx=16, d_vocab=tok.vocab_size, steps=3,
                      batch_size=4, eval_every=100), tokens, tokenizer=tok, run_dir=root / f"w{width}", progress=False)
    inst = root / "inst.jsonl"
    inst.write_text("".join(json.dumps({"prompt": f"\n{a}+{b}=", "answer": str(a + b)[0]}) + "\n"
                            for a, b in [(12, 30), (41, 7), (5, 5), (60, 21)]))
    yield root, inst
    torch.set_num_threads(threads)


def test_run_fit_predict_emergence_from_run_folders(family, capsys):
    root, inst = family
    runs = []
    for width in (8, 16, 24):
        out = root / f"pu{width}"
        assert main(["passuntil", "run", "--model", str(root / f"w{width}"), "--instances", str(inst),
                     "--r", "2", "--k-max", "400", "--out", str(out)]) == 0
        res = read_json(out / "result.json")
        assert res["N"] > 0 and len(res["instances"]) == 4 and 0 < res["task"]["pu"] <= 1
        assert all(i["ci"][0] <= i["pu"] <= i["ci"][1] for i in res["instances"])
        runs.append(str(out))
    assert "task PU" in capsys.readouterr().out
    assert main(["passuntil", "predict", "--runs", *runs, "--at", "1e6", "--out", str(root / "fit")]) == 0
    pred = read_json(root / "fit" / "predict.json")
    lo, hi = pred["prediction_ci"][0]
    assert 0 <= lo <= pred["prediction"][0] <= hi <= 1 and pred["N"] == sorted(pred["N"])
    assert main(["passuntil", "predict", "--runs", *runs, "--at", "1e6", "--per-instance", "--out",
                 str(root / "inst")]) == 0
    pred = read_json(root / "inst" / "predict.json")
    assert pred["per_instance"] and 0 <= pred["prediction_ci"][0][0] <= pred["prediction"][0] <= 1
    assert main(["passuntil", "emergence", "--runs", *runs, "--out", str(root / "fit")]) == 2  # one seed per size
    assert "needs at least 2 models (seeds) per size" in capsys.readouterr().err
    assert main(["passuntil", "emergence", "--runs", *runs, *runs, "--out", str(root / "fit")]) == 0
    out = read_json(root / "fit" / "emergence.json")["emergence"]
    assert out["class"] in ("linear", "convex", "concave") and out["min_seeds"] == 2 and out["n_models"] == 6


def test_fit_from_points_and_pass_at_k(tmp_path, capsys):
    n = np.logspace(4, 6, 5)
    pu = np.exp(-300 * n**-0.5)
    assert main(["passuntil", "fit", "--n", *map(str, n), "--pu", *map(str, pu), "--out", str(tmp_path)]) == 0
    assert read_json(tmp_path / "fit.json")["alpha"] == pytest.approx(0.5, abs=1e-6)
    assert main(["passuntil", "pass-at-k", "--n", "10", "--c", "2", "--k", "1", "5", "--out", str(tmp_path)]) == 0
    assert read_json(tmp_path / "pass_at_k.json")["pass_at_k"] == pytest.approx([0.2, 1 - 28 / 126])
    assert "pass@5" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["fit", "--n", "1e4", "2e4", "--pu", "0.1", "0.2"], "at least 3"),
    (["fit", "--n", "1e4", "2e4", "4e4", "--pu", "0.1", "0.2", "1.5"], "(0, 1]"),
    (["predict", "--n", "1e4", "2e4", "4e4", "--pu", "0.1", "0.2", "0.3", "--at", "8e4", "--per-instance"],
     "--per-instance needs --runs"),
    (["pass-at-k", "--k", "3"], "needs --n and --c"),
    (["emergence", "--n", "1e4", "2e4", "4e4", "--pu", "0.1", "0.2", "0.3"],
     "needs at least 2 models (seeds) per size to weigh the curvature against model-level noise; N = 10000 has 1"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["passuntil", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1

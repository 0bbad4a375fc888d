"""Model families end to end through the CLI, α_N, and the monogenic/polygenic token classes."""

import json

import numpy as np
import pytest

from quanta_interp.cli import main
from quanta_interp.lm.scaling import TokenClasses, fit_alpha_n


def test_token_classes_on_known_curves():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    losses = np.array([
        [6.0, 6.5, 0.1, 0.2],  # monogenic: drop at the third size
        [0.0, 0.0, 0.0, 0.0],  # polygenic: filled in below
        [7.0, 0.2, 6.0, 0.1],  # drops twice: neither
        [2.0, 2.0, 2.0, 2.0],  # flat
    ])
    losses[1] = 3.0 - 0.4 * np.log(n / n[0])  # slope −0.4 per ln N, R² = 1
    classes = TokenClasses().fit(losses, n)
    assert classes.labels_.tolist() == ["monogenic", "polygenic", "other", "other"]
    assert classes.step_.tolist() == [2, -1, -1, -1]
    assert classes.slope_[1] == pytest.approx(-0.4) and classes.r2_[1] == pytest.approx(1.0)
    assert classes.counts() == {"monogenic": 1, "polygenic": 1, "other": 2}
    assert TokenClasses(slope=-0.5).fit(losses, n).labels_[1] == "other"
    with pytest.raises(ValueError, match="increasing n_params"):
        TokenClasses().fit(losses, n[::-1])
    with pytest.raises(ValueError, match="low < high"):
        TokenClasses(high=0.1, low=0.3)


def test_alpha_n_recovers_a_known_exponent():
    n = np.geomspace(1e3, 1e6, 6)
    fit, table = fit_alpha_n(n, 4.0 * n**-0.08 * np.exp(np.random.default_rng(0).normal(0, 0.002, 6)))
    assert fit.exponent == pytest.approx(0.08, abs=0.005)
    assert fit.exponent_ci[0] < 0.08 < fit.exponent_ci[1] and len(table) > 1


def test_family_and_scaling_cli(tmp_cache, tmp_path):
    text = tmp_path / "corpus"
    text.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # words drawn from a small lexicon: bigger models learn the spellings better
        words = rng.choice(["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "cat"], 1500)
        (text / f"doc{i}.txt").write_text(" ".join(words))
    fam = tmp_path / "fam"
    common = ["--corpus", str(text), "--n-ctx", "32", "--batch-size", "16"]
    assert main(["lm", "family", "--out", str(fam), "--sizes", "1x8,1x16,2x32", "--steps", "40", "--lr", "1e-2",
                 *common[:2], *common[2:]]) == 0
    assert main(["lm", "scaling", "--family", str(fam), "--out", str(tmp_path / "sc"), "--corpus", str(text),
                 "--context", "16", "--max-tokens", "600", "--high", "1.0", "--low", "0.3"]) == 0
    summary = json.loads((tmp_path / "sc" / "summary.json").read_text())
    sizes = [m["non_embedding_params"] for m in summary["models"]]
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] > 20
    losses = [m["mean_loss"] for m in summary["models"]]
    assert losses[0] > losses[-1] and summary["alpha_N"] > 0
    assert summary["alpha_N_ci"][0] <= summary["alpha_N"] <= summary["alpha_N_ci"][1]
    assert np.load(tmp_path / "sc" / "losses.npy").shape == (summary["n_tokens_evaluated"], 3)
    assert sum(summary["token_classes"][k] for k in ("monogenic", "polygenic", "other")) == summary["n_tokens_evaluated"]
    assert main(["lm", "family", "--out", str(fam), "--sizes", "2y3"]) == 2

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


def test_family_and_scaling_cli(tmp_cache, tmp_path, capsys):
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
    scaling = ["lm", "scaling", "--family", str(fam), "--out", str(tmp_path / "sc"), "--corpus", str(text),
               "--context", "16", "--max-tokens", "600", "--high", "1.0", "--low", "0.3"]
    assert main(scaling) == 2  # trained without a convergence rule: refused, naming the members and the rule
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("quanta lm: error: --unconverged family") and "3 of 3 members are not known to have " \
        "converged (rule: none, a fixed number of steps): L1-d8 (40 steps), L1-d16 (40 steps), L2-d32 (40 steps)" in err
    assert main([*scaling, "--unconverged", "drop"]) == 2
    assert "only 0 of 3 members converged" in capsys.readouterr().err and not (tmp_path / "sc").exists()
    assert main([*scaling, "--unconverged", "keep"]) == 0
    summary = json.loads((tmp_path / "sc" / "summary.json").read_text())
    assert [m["converged"] for m in summary["members"]] == [None] * 3 and summary["unconverged"] == "keep"
    sizes = [m["non_embedding_params"] for m in summary["models"]]
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] > 20
    losses = [m["mean_loss"] for m in summary["models"]]
    assert losses[0] > losses[-1] and summary["alpha_N"] > 0
    assert summary["alpha_N_ci"][0] <= summary["alpha_N"] <= summary["alpha_N_ci"][1]
    assert np.load(tmp_path / "sc" / "losses.npy").shape == (summary["n_tokens_evaluated"], 3)
    assert sum(summary["token_classes"][k] for k in ("monogenic", "polygenic", "other")) == summary["n_tokens_evaluated"]
    assert main(["lm", "family", "--out", str(fam), "--sizes", "2y3"]) == 2


def test_a_family_trained_to_convergence(tmp_cache, tmp_path, capsys):
    """Members trained under the rule record whether it stopped them; `lm scaling` fits the converged ones and
    refuses the family while one still falls (here: a ceiling too low for the widest member)."""
    from quanta_interp.lm.scaling import family_members

    text = tmp_path / "corpus"
    text.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        (text / f"doc{i}.txt").write_text(" ".join(rng.choice(["the", "fox", "and", "cat", "dog"], 800)))
    fam = tmp_path / "fam"
    rule = ["--schedule", "constant", "--converge-tol", "0.1", "--eval-every", "10", "--eval-batches", "4",
            "--n-ctx", "16", "--batch-size", "8", "--lr", "1e-2", "--keep-checkpoints"]
    assert main(["lm", "family", "--out", str(fam), "--corpus", str(text), "--sizes", "1x8,1x16,1x32", "--steps",
                 "400", *rule]) == 0
    members = family_members(fam)
    assert all(m.converged for m in members) and all(40 <= m.steps < 400 for m in members)
    assert members[0].rule == "held-out loss falling < 10% over the last doubling of steps, within 400 steps"
    out = tmp_path / "sc"
    assert main(["lm", "scaling", "--family", str(fam), "--out", str(out), "--corpus", str(text), "--context", "16",
                 "--max-tokens", "300"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["steps"] for m in summary["members"]] == [m.steps for m in members]
    assert all(m["converged"] for m in summary["members"]) and summary["unconverged"] == "refuse"
    short = tmp_path / "short"  # a ceiling of 40 steps stops nobody: every member refused, by name
    assert main(["lm", "family", "--out", str(short), "--corpus", str(text), "--sizes", "1x8,1x16,1x32", "--steps",
                 "40", *rule]) == 0
    capsys.readouterr()
    assert main(["lm", "scaling", "--family", str(short), "--out", str(tmp_path / "sc2"), "--corpus", str(text),
                 "--context", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(rule: held-out loss falling < 10% over the last doubling of steps, within 40 steps)" in \
        err[0] and "L1-d32 (40 steps)" in err[0]

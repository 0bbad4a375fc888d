"""Quanta across scale: N* on a synthetic family with known learning scales, the predictions' statistics,
and `quanta discover --family` end to end on a tiny char family (resume, browser data, bad input)."""

import json

import numpy as np
import pytest

from quanta_interp.quanta.scaling import (
    compare_estimators,
    drop_sharpness,
    learning_scale,
    planted_family,
    quanta_scaling,
    quantum_centroids,
    spearman_ci,
)


def synthetic_family(n_star, sizes, x, *, high=3.0, steep=4.0, noise=0.05, seed=0):
    """Tokens of quantum k have loss high / (1 + (x / n_star[k])^steep) + noise: learned at n_star[k]."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    curve = high / (1 + (x[None, :] / np.asarray(n_star)[labels, None]) ** steep)
    losses = np.abs(curve + noise * rng.normal(size=curve.shape))
    return losses, labels, np.full(len(labels), 0.02)


def test_learning_scale_recovers_known_scales_and_censors():
    x = np.geomspace(1e3, 1e6, 10)
    truth = np.array([4e3, 2e4, 1e5, 4e5])
    losses, labels, ref = synthetic_family(truth, [1] * 4, x, noise=0.0)
    # midpoint of 3 → 0.02 is 1.51: the logistic crosses it at 0.99·N_k
    np.testing.assert_allclose(learning_scale(losses, x, ref), truth, rtol=0.12)
    flat = np.full(10, 0.05)
    assert learning_scale(flat, x, 0.02) == x[0]  # already learned by the smallest member: left-censored
    never = np.linspace(3.0, 2.0, 10)
    assert learning_scale(never, x, 0.02) == np.inf  # never reaches the midpoint 1.51: right-censored
    with pytest.raises(ValueError, match="strictly increasing positive x"):
        learning_scale(losses, x[::-1], ref)


def test_sharpness_separates_a_step_from_a_steady_decline():
    x = np.geomspace(1e3, 1e6, 7)  # ln steps of ln(10)/2
    step = np.array([3, 3, 3, 0.1, 0.1, 0.1, 0.1])
    line = np.linspace(3, 0.1, 7)
    s = drop_sharpness(np.stack([step, line, np.full(7, 1.0)]), x)
    assert s[0] == pytest.approx(2 / np.log(10)) and s[1] == pytest.approx(1 / np.log(1e3))
    assert np.isnan(s[2])


def test_quanta_scaling_on_a_synthetic_family_with_known_order():
    """Quantum k (frequency rank k+1, Zipf sizes) is learned at N_k = 2000·(k+1): the order the quantization
    model predicts and n_learned ∝ N (b = 1), so α_N = α."""
    x = np.geomspace(1.5e3, 8e4, 9)
    k = np.arange(30)
    sizes = np.maximum(3, np.round(300 * (k + 1) ** -1.5)).astype(int)
    truth = 2000.0 * (k + 1)
    losses, labels, ref = synthetic_family(truth, sizes, x, steep=12.0)
    result = quanta_scaling(losses, x, labels, ref, rank_slope=-1.5, alpha_n=0.5, alpha_n_source="given",
                            thresholds=dict(high=2.0, low=0.3, slope=-0.3, r2=0.9), n_boot=100)
    stars = np.array([c.n_star for c in result.clusters])
    inside = truth <= x[-1]
    np.testing.assert_allclose(stars[inside], truth[inside], rtol=0.15)
    assert np.all(np.isinf(stars[~inside])) and result.spearman_rank_n_star.n_right_censored == (~inside).sum()
    cis = np.array([c.n_star_ci for c in result.clusters])[inside]
    assert np.mean((cis[:, 0] <= truth[inside] * 1.1) & (truth[inside] * 0.9 <= cis[:, 1])) >= 0.8
    s = result.spearman_rank_n_star
    assert s.rho > 0.95 and s.ci[0] > 0.9 and s.p < 1e-6
    n = result.n_learned
    assert n.b == pytest.approx(1.0, abs=0.2) and n.b_ci[0] < n.b < n.b_ci[1]
    assert n.implied_alpha_N == pytest.approx(0.5 * n.b) and n.measured_alpha_N == 0.5
    assert result.token_classes.monogenic > 0.5 * len(labels)  # every token drops once, sharply
    assert result.sharpness.median_ratio == pytest.approx(1.0, abs=0.35)  # quanta drop like their tokens
    # shuffled learning order: the correlation is gone
    shuffled = quanta_scaling(losses, x, np.random.default_rng(1).permutation(30)[labels], ref, n_boot=50)
    assert abs(shuffled.spearman_rank_n_star.rho) < 0.5
    # a rank slope flatter than −1 gives α < 0: the implied α_N interval is still [low, high]
    flat = quanta_scaling(losses, x, labels, ref, rank_slope=-0.8, n_boot=50).n_learned
    assert flat.implied_alpha_N < 0 and flat.implied_alpha_N_ci[0] <= flat.implied_alpha_N <= \
        flat.implied_alpha_N_ci[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_heldout_estimator_recovers_a_planted_rho_the_selected_one_misses(seed):
    """The old estimator measures curves on the tokens the top member predicts (loss < 0.1) with the top
    member as reference: only learned quanta enter, all learned by construction, and ρ comes out outside its
    CI of the planted value. The held-out estimator (quanta defined on one half, every token of the other half
    assigned by nearest centroid, a fixed learned level) recovers it within its CI."""
    fam = planted_family(seed)
    r = compare_estimators(fam, n_boot=20, seed=seed)
    o, n, planted = r.selected, r.heldout, r.planted
    assert r.assigned_correctly > 0.99 and 0.6 < planted < 0.8
    assert o.n_right_censored == 0 and o.n < 0.6 * len(fam.n_star)  # only learned quanta, every one learned
    assert not o.ci[0] <= planted <= o.ci[1], r
    assert n.ci[0] <= planted <= n.ci[1] and abs(n.rho - planted) < 0.1, r
    assert n.n_right_censored > 0.4 * n.n
    with pytest.raises(ValueError, match=r"empty quanta \[1\]"):
        quantum_centroids(fam.gradients[:3], np.array([0, 2, 2]))


def test_spearman_ci_degenerate_inputs():
    assert spearman_ci([1, 2], [3, 4]).rho is None
    assert spearman_ci([1, 2, 3], [5, 5, 5]).rho is None
    r = spearman_ci([1, 2, 3, 4, 5], [1, 2, np.inf, 3, np.inf])
    assert 0.5 < r.rho <= 1 and r.n == 5


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory):
    """Three 1-layer char models of growing width on one text (the largest is also the QDG model), and a
    model trained on another text (another char vocabulary)."""
    import os

    from quanta_interp import lm
    from quanta_interp.corpora import load_corpus

    root = tmp_path_factory.mktemp("family")
    os.environ["QUANTA_CACHE"] = str(root / "cache")
    text = "".join(f"To be, or not to be: that is the question {i % 7}.\nWhether 'tis nobler & more\n"
                   for i in range(120))
    (root / "text.txt").write_text(text)
    (root / "other.txt").write_text("zyxwvut " * 400)
    corpus = load_corpus(str(root / "text.txt"), "char", val_fraction=0.0)
    for d, steps in ((8, 60), (16, 100), (32, 150)):
        lm.train(lm.TrainConfig(n_layers=1, d_model=d, n_heads=1 if d < 16 else 2, n_ctx=32, d_vocab=corpus.vocab_size,
                                steps=steps, batch_size=16, eval_every=1000), corpus.stream(),
                 tokenizer=corpus.tokenizer, run_dir=root / f"d{d}", progress=False)
    other = load_corpus(str(root / "other.txt"), "char", val_fraction=0.0)
    lm.train(lm.TrainConfig(n_layers=1, d_model=8, n_heads=1, n_ctx=32, d_vocab=other.vocab_size, steps=5,
                            batch_size=4, eval_every=1000), other.stream(), tokenizer=other.tokenizer,
             run_dir=root / "other", progress=False)
    yield root
    os.environ.pop("QUANTA_CACHE")


def _args(root, out, family, *extra):
    return ["discover", "--model", str(root / "d32"), "--corpus", str(root / "text.txt"), "--out", str(out),
            "--n-tokens", "60", "--clusters", "4", "--over-cluster", "2", "--context", "16", "--min-context", "8",
            "--loss-threshold", "0.5", "--projection-dim", "0", "--keep-induction", "--family", family,
            "--token-classes", "2,0.5,-0.3,0.9", *extra]


def test_discover_with_a_family_end_to_end(tiny_family, capsys, monkeypatch):
    from quanta_interp import lm
    from quanta_interp.cli import main

    root, out = tiny_family, tiny_family / "out"
    family = ",".join(str(root / f"d{d}") for d in (8, 16, 32))
    assert main(_args(root, out, family)) == 0
    result = json.loads((out / "quanta_scaling.json").read_text())
    sizes = [lm.non_embedding_params(lm.load(str(root / f"d{d}")).bridge) for d in (8, 16, 32)]
    assert result["x"] == sizes and result["axis"] == "N" and result["members"] == ["d8", "d16", "d32"]
    assert result["n_quanta"] == 4 and sum(c["size"] for c in result["clusters"]) == 60
    clusters = json.loads((out / "clusters.json").read_text())
    for c, q in zip(clusters, result["clusters"], strict=True):
        assert c["size"] == q["size"] and len(q["mean"]) == 3
        # the last member is the QDG model: its losses on the same windows are the captured ones
        assert q["mean"][-1] == pytest.approx(np.mean([m["loss"] for m in c["members"]]), abs=1e-3)
        assert (q["n_star"] is None and q["censored"] == "right") or sizes[0] <= q["n_star"] <= sizes[-1]  # ∞ → null
        assert q["mean"][0] > q["mean"][-1]  # the smallest, least-trained member is worse on every quantum
    assert sum(result["token_classes"][k] for k in ("monogenic", "polygenic", "other")) == 60
    assert (out / "quanta_scaling.png").stat().st_size > 1000 and (out / "quanta_scaling.svg").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quanta_scaling"]["spearman_rank_n_star"]["n"] == 4
    data = json.loads((out / "browser.html").read_text().split('id="qi-data">')[1].split("</script>")[0])
    assert data["family"]["x"] == sizes and len(data["clusters"][0]["curve"]["mean"]) == 3
    assert np.array(data["clusters"][0]["cos"]).shape[0] == min(20, clusters[0]["size"])

    # a rerun scores nothing again: no model loads, same answer
    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(lm, "load", no_model)
    assert main(_args(root, out, family)) == 0
    assert json.loads((out / "quanta_scaling.json").read_text())["clusters"] == result["clusters"]


@pytest.mark.parametrize("case", ["two", "tokenizer", "older", "no_checkpoints"])
def test_family_bad_input_is_one_line(tiny_family, tmp_path, capsys, case):
    from quanta_interp.cli import main

    root = tiny_family
    out = tmp_path / "out"
    family = {"two": f"{root / 'd8'},{root / 'd16'}", "tokenizer": f"{root / 'd8'},{root / 'other'},{root / 'd32'}",
              "older": ",".join(str(root / f"d{d}") for d in (8, 16, 32)), "no_checkpoints": str(root / "d8")}[case]
    if case == "older":  # the previous round's layout: outputs beside the gradients, no identity.json
        out.mkdir()
        (out / "summary.json").write_text("{}")
        (out / "grads.npy").write_bytes(b"")
    extra = ["--family-steps", "20,40,60"] if case == "no_checkpoints" else []
    assert main(_args(root, out, family, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"two": "--family must have at least 3 members", "tokenizer": "--family member other",
                "older": "--out", "no_checkpoints": f"--family {root / 'd8'} is one training run and kept no "
                                                    "checkpoints to follow over training"}[case]
    assert err[-1].startswith(f"quanta discover: error: {expected}") and len(err[-1]) < 400, err[-1]
    if case == "tokenizer":
        assert "another tokenizer" in err[-1] and not out.exists()  # refused before the model loads
    if case == "older":
        assert "older quanta_interp layout" in err[-1] and sorted(p.name for p in out.iterdir()) == ["grads.npy",
                                                                                                      "summary.json"]


def test_family_steps_follow_one_runs_kept_checkpoints(tmp_path):
    """A run trained with keep_checkpoints is a family over its training: its checkpoints at the steps asked
    for, each loadable; steps it did not keep, or none given, are one line naming family_steps / family."""
    from quanta_interp import lm
    from quanta_interp.config import ParameterError
    from quanta_interp.quanta.family import check_members, resolve_family

    tokens = np.arange(3000) % 11
    lm.train(lm.TrainConfig(n_layers=1, d_model=8, n_heads=1, n_ctx=16, d_vocab=11, steps=60, batch_size=4,
                            eval_every=20, keep_checkpoints=True), tokens, val_tokens=tokens[:500],
             run_dir=tmp_path / "run", progress=False)
    members = resolve_family(str(tmp_path / "run"), (20, 40, 60))
    assert [m["name"] for m in members] == ["step 20", "step 40", "step 60"]
    check_members(members, steps=True)
    assert lm.load(members[0]["spec"]).cfg.d_model == 8
    with pytest.raises(ParameterError, match=r"^family_steps .* kept no checkpoint at steps \[30\]; it kept 20, 40, 60$"):
        resolve_family(str(tmp_path / "run"), (20, 30, 60))
    with pytest.raises(ParameterError, match=r"^family .* is one training run: give family_steps"):
        resolve_family(str(tmp_path / "run"))
    from quanta_interp.quanta import QDGConfig

    run = str(tmp_path / "run")  # the config, so `quanta discover --family RUN --family-steps`, accepts it
    assert QDGConfig.build(model=run, family=run, family_steps=(20, 40, 60)).family_steps == (20, 40, 60)
    with pytest.raises(ParameterError, match=r"family_steps .* kept no checkpoint at steps \[30\]"):
        QDGConfig.build(model=run, family=run, family_steps=(20, 30, 60))


def test_heldout_targets_avoid_the_scanned_blocks_and_cover_the_rest_uniformly():
    from quanta_interp.quanta.family import heldout_targets
    from quanta_interp.quanta.scan import blocks

    lengths = [100, 50, 300]
    table = blocks(lengths, 16, 4)
    read = {tuple(b[:2]) for b in table[np.random.default_rng(0).permutation(len(table))[:5]]}
    rows = heldout_targets(lengths, 16, 4, 10**6, skip_blocks=5, seed=0)
    unread = [b for b in table if tuple(b[:2]) not in read]
    assert len(rows) == sum(b[2] - b[1] - 3 for b in unread)  # every position of the unread blocks, once
    assert not {tuple(r[:2]) for r in rows} & read and np.all(rows[:, 2] - rows[:, 1] >= 4)
    assert len(heldout_targets(lengths, 16, 4, 40, skip_blocks=5, seed=0)) == 40
    with pytest.raises(ValueError, match=f"the scan read all {len(table)} blocks"):
        heldout_targets(lengths, 16, 4, 10, skip_blocks=len(table))

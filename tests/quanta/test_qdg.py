"""QDG: the block scan, clustering (dense and kNN) on known clusters, rank-frequency fits, and the
whole `quanta discover` job on a tiny trained model (outputs, escaping, resume, re-analysis, extension,
bad input before the model loads)."""

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from quanta_interp.config import ParameterError
from quanta_interp.quanta.clustering import QuantaClustering
from quanta_interp.quanta.config import QDGConfig
from quanta_interp.quanta.frequencies import envelope, rank_frequency_fit, rank_sizes
from quanta_interp.quanta.scan import blocks, induction_mask


def clustered_unit_vectors(n: int, k: int, dim: int, noise: float, seed: int = 0):
    """Unit vectors around k random directions, with Zipf-distributed cluster sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    p = np.arange(1, k + 1) ** -1.2
    labels = rng.choice(k, n, p=p / p.sum())
    X = centres[labels] / np.sqrt(dim) + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return X / np.linalg.norm(X, axis=1, keepdims=True), labels


def test_induction_mask_and_blocks():
    doc = np.array([5, 6, 7, 1, 5, 6, 7, 2, 6, 7])
    assert induction_mask(doc).tolist() == [False] * 6 + [True] + [False] * 3
    # documents of 10 and 3 tokens, blocks of 4, targets need ≥ 2 tokens of context
    assert blocks([10, 3], 4, 2).tolist() == [[0, 0, 4], [0, 4, 8], [1, 0, 2]]  # token 9: 1 token of context
    assert blocks([2], 4, 2).tolist() == []  # no token has 2 tokens of context before it


def test_dense_and_knn_recover_known_clusters():
    X, y = clustered_unit_vectors(600, 6, 40, noise=0.6)
    dense = QuantaClustering(6, random_state=0).fit(X * np.random.default_rng(1).uniform(0.1, 10, (600, 1)))
    assert adjusted_rand_score(y, dense.labels_) > 0.95  # row norms do not matter
    assert dense.affinity_.shape == (600, 600) and np.allclose(np.diag(dense.affinity_), 1, atol=1e-3)
    knn = QuantaClustering(6, method="knn", n_neighbors=15, random_state=0).fit(X)
    assert knn.affinity_.nnz < 600 * 35 and (knn.affinity_ != knn.affinity_.T).nnz == 0
    assert adjusted_rand_score(dense.labels_, knn.labels_) > 0.9
    assert len(np.unique(dense.labels_for(3))) == 3
    assert adjusted_rand_score(y, QuantaClustering(6, assign_labels="cluster_qr").fit(X).labels_) > 0.95
    with pytest.raises(ParameterError, match="^n_clusters must be between 2 and the number of tokens"):
        QuantaClustering(601).fit(X)
    with pytest.raises(ParameterError, match="^method must be one of dense, knn"):
        QuantaClustering(3, method="full").fit(X)


def test_refinement_returns_each_token_to_the_cluster_it_is_most_similar_to():
    X, y = clustered_unit_vectors(600, 6, 40, noise=0.6)
    X = X * np.where(np.random.default_rng(2).random(600) < 0.5, -1, 1)[:, None]  # |cos| ignores the sign
    qc = QuantaClustering(6, affinity="unsigned", refine=10, random_state=0).fit(X)
    corrupted = y.copy()
    wrong = np.random.default_rng(3).random(600) < 0.3
    corrupted[wrong] = (y[wrong] + 1) % 6  # 30 % of tokens put with a neighbouring cluster
    assert adjusted_rand_score(y, corrupted) < 0.6
    assert adjusted_rand_score(y, qc.refine_labels(corrupted)) > 0.99
    lonely = y.copy()
    lonely[[0, int(np.flatnonzero(y != y[0])[0])]] = 6  # a cluster of two unlike tokens: both leave, it vanishes
    fixed = qc.refine_labels(lonely)
    assert fixed.max() == 5 and adjusted_rand_score(y, fixed) == 1.0
    assert QuantaClustering(6, affinity="unsigned").fit(X).refine_labels(corrupted) is corrupted  # refine=0
    for affinity in ("angular", "cosine", "abs"):  # |cos| is read back from every affinity
        other = QuantaClustering(6, affinity=affinity, refine=1).fit(X)
        assert np.allclose(other._abs_cos(other.affinity_[:5]), np.abs(X[:5] @ X.T), atol=2e-3)
    with pytest.raises(ParameterError, match="^method knn needs refine 0"):  # one rule, one message (ClusteringConfig)
        QuantaClustering(6, method="knn", refine=3).fit(X)
    with pytest.raises(ParameterError, match="^refine must be a non-negative integer, got -1"):
        QuantaClustering(6, refine=-1).fit(X)
    with pytest.raises(ParameterError, match="^method knn needs affinity angular or cosine"):
        QDGConfig.build(method="knn")
    with pytest.raises(ParameterError, match="^method knn needs refine 0"):
        QDGConfig.build(method="knn", affinity="angular")
    assert QDGConfig.build(method="knn", affinity="angular", refine=0).method == "knn"
    assert QDGConfig.preset("paper").refine == 0


def test_rank_frequency_fit_recovers_a_zipf_slope():
    sizes = np.round(2000 * np.arange(1, 41) ** -1.5).astype(int)
    fit = rank_frequency_fit(sizes, alpha_n=0.083)
    assert fit.slope == pytest.approx(-1.5, abs=0.05) and fit.slope_ci[0] <= fit.slope <= fit.slope_ci[1]
    assert fit.predicted_slope == pytest.approx(-1.083)
    assert len(fit.range_sensitivity) >= 6 and all(-1.7 < r["slope"] < -1.3 for r in fit.range_sensitivity)
    ranged = rank_frequency_fit(sizes, fit_ranks=(5, 30), alpha_n=0.5, alpha_n_source="given")
    assert ranged.fit.x_range == (5.0, 30.0) and ranged.slope == pytest.approx(-1.5, abs=0.05)
    assert ranged.alpha_N_source == "given" and ranged.predicted_slope == -1.5
    unfitted = rank_frequency_fit(sizes, fit_ranks=(39, 45))  # two ranks cannot be fitted
    assert unfitted.slope is None and list(unfitted.to_dict())[-2:] == ["slope", "note"]
    assert rank_sizes(np.array([2, 2, 0, 1, 2, 1])).tolist() == [3, 2, 1]
    assert envelope([np.array([5, 1]), np.array([4, 3, 2])]).tolist() == [5, 3, 2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 1-layer char model trained briefly on a text with hostile markup, as a `quanta lm train` run."""
    import os

    from quanta_interp import lm
    from quanta_interp.corpora import load_corpus

    root = tmp_path_factory.mktemp("qdg")
    os.environ["QUANTA_CACHE"] = str(root / "cache")
    text = "".join(f"To be, or not to be: that is the question {i % 7}.\n<script>alert('x')</script> & more\n"
                   for i in range(120))
    (root / "text.txt").write_text(text)
    corpus = load_corpus(str(root / "text.txt"), "char", val_fraction=0.0)
    lm.train(lm.TrainConfig(n_layers=1, d_model=32, n_heads=2, n_ctx=32, d_vocab=corpus.vocab_size, steps=150,
                  batch_size=16, eval_every=1000), corpus.stream(), tokenizer=corpus.tokenizer,
             run_dir=root / "model", progress=False)
    yield root
    os.environ.pop("QUANTA_CACHE")


def _args(root, out, *extra):
    return ["discover", "--model", str(root / "model"), "--corpus", str(root / "text.txt"), "--out", str(out),
            "--n-tokens", "40", "--clusters", "4", "--context", "16", "--min-context", "8", "--loss-threshold", "0.5",
            "--projection-dim", "0", "--keep-induction", "--alpha-n", "0.3", *extra]


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars: one line


def test_quanta_discover_end_to_end(tiny_run, capsys, monkeypatch):
    from quanta_interp import lm
    from quanta_interp.cli import main

    out = tiny_run / "out"
    assert main(_args(tiny_run, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["context"] == 16 and summary["settings"]["projection_dim"] == 0
    assert summary["n_tokens"] == 40 == sum(c["size"] for c in summary["clusters"])  # exactly the tokens asked for
    assert 8 <= summary["context_tokens"]["min"] and summary["context_tokens"]["max"] <= 16
    assert [c["size"] for c in summary["clusters"]] == sorted((c["size"] for c in summary["clusters"]), reverse=True)
    fit = summary["rank_frequency"]
    assert fit["predicted_slope"] == pytest.approx(-1.3) and fit["alpha_N_source"] == "given"
    # the scan measured exactly the loss of the window whose gradient was taken
    scan_losses = np.load(out / "scan" / "losses.npy")[:40]
    np.testing.assert_allclose(np.load(out / "gradients" / "losses.npy")[:40], scan_losses, atol=1e-4)
    clusters = json.loads((out / "clusters.json").read_text())
    member = clusters[0]["members"][0]
    assert set(member) == {"doc", "start", "pos", "doc_name", "context", "target", "loss"} and member["loss"] < 0.5
    assert len(member["context"]) == member["pos"] - member["start"]  # char model: a token is a character
    for f in ("rank_frequency.png", "rank_frequency.svg", "umap.png"):
        assert (out / f).stat().st_size > 1000
    csv = (out / "rank_frequency.csv").read_text().splitlines()
    assert csv[0].startswith("rank,k4,") and csv[0].endswith(",envelope") and len(csv) == 11  # counts 4 and 10
    page = (out / "browser.html").read_text()
    data = page.split('id="qi-data">')[1].split("</script>")[0]
    body = page.split("</head>")[1].replace("'http://www.w3.org/2000/svg'", "")  # SVG's namespace name, never fetched
    assert "<" not in data and ">" not in data and "http" not in body
    shown = json.loads(data)["clusters"]
    assert any("<" in e["context"] for c in shown for e in c["examples"])  # markup in the corpus reached the page
    # every quantum carries its one-line description, in clusters.json, the summary and the page
    assert [c["description"]["text"] for c in clusters] == [c["description"] for c in summary["clusters"]] == \
        [c["description"]["text"] for c in shown]
    assert all(set(c["description"]["tokens"]) <= {m["target"] for m in c["members"]} for c in clusters)
    assert summary["descriptions"]["quanta"] == len(clusters)

    # a rerun resumes: nothing is recomputed and the answer is the same
    mtime = (out / "gradients" / "gradients.npy").stat().st_mtime
    assert main(_args(tiny_run, out)) == 0 and (out / "gradients" / "gradients.npy").stat().st_mtime == mtime
    assert json.loads((out / "summary.json").read_text())["clusters"] == summary["clusters"]

    # other analysis settings re-cluster the stored gradients without loading the model
    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(lm, "load", no_model)
    assert main(_args(tiny_run, out, "--clusters", "3", "--fit-ranks", "1-5", "--assign-labels", "cluster_qr")) == 0
    again = json.loads((out / "summary.json").read_text())
    assert len(again["clusters"]) == 3 and again["rank_frequency"]["fit_ranks"] == [1, 5]
    assert (out / "gradients" / "gradients.npy").stat().st_mtime == mtime
    monkeypatch.undo()

    # more tokens extend the capture: the first 40 rows stay as they were
    first = np.load(out / "gradients" / "gradients.npy")[:40].copy()
    assert main(_args(tiny_run, out, "--n-tokens", "55")) == 0
    assert json.loads((out / "summary.json").read_text())["n_tokens"] == 55
    np.testing.assert_array_equal(np.load(out / "gradients" / "gradients.npy")[:40], first)


def test_whole_document_context_is_capped_at_the_models_n_ctx_and_said_once(tiny_run, capsys):
    from quanta_interp.cli import main

    out = tiny_run / "doc"
    argv = _args(tiny_run, out, "--n-tokens", "20", "--clusters", "2")
    assert main(argv[: argv.index("--context")] + argv[argv.index("--context") + 2:] + ["--context", "doc"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["block_length"] == 32 and summary["context_tokens"]["max"] <= 32  # the model's n_ctx
    assert summary["notes"].count("context doc is longer than the model's n_ctx = 32; capped at 32 tokens") == 1
    assert capsys.readouterr().out.count("capped at 32 tokens") == 1
    # the paper's context: the whole document up to 32 tokens, then at least half a window, one forward per window
    assert summary["shared_windows"] is True and "documents_shorter_than_min_context" not in summary  # none here
    targets = np.load(out / "gradients" / "targets.npy")
    late = targets[targets[:, 2] > 32]
    assert (targets[targets[:, 2] <= 32, 1] == 0).all() and len(late) and (late[:, 2] - late[:, 1]).min() >= 16
    # a batch that cannot hold one window: one line naming the minimum, before anything is written
    refused = tiny_run / "doc_small_batch"
    argv = [a if a != str(out) else str(refused) for a in argv]
    assert main(argv[: argv.index("--context")] + argv[argv.index("--context") + 2:]
                + ["--context", "doc", "--batch-tokens", "20"]) == 2
    assert _last_error(capsys) == ("quanta discover: error: --batch-tokens must be at least 32, the longest shared "
                                   "window (one forward per window), got 20")
    assert not (refused / "identity.json").exists()


def test_documents_too_short_for_min_context_are_skipped_and_counted(tiny_run):
    from quanta_interp.cli import main

    folder = tiny_run / "with_short"
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_text((tiny_run / "text.txt").read_text())
    (folder / "b.txt").write_text("To be")  # 5 characters: no token has 8 before it
    out = tiny_run / "short"
    argv = _args(tiny_run, out, "--n-tokens", "20", "--clusters", "2")
    argv[argv.index("--corpus") + 1] = str(folder)
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents_shorter_than_min_context"] == 1 and "shared_windows" not in summary
    assert all("b.txt" not in m["doc_name"] for c in json.loads((out / "clusters.json").read_text()) for m in c["members"])


def test_three_or_four_tokens_still_give_a_summary_and_say_why_a_picture_is_missing(tiny_run, capsys):
    from quanta_interp.cli import main

    out = tiny_run / "four"
    assert main(_args(tiny_run, out, "--n-tokens", "4", "--clusters", "2", "--over-cluster", "1", "--refine", "0")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tokens"] == 4 and len(summary["clusters"]) == 2
    assert not any("umap" in n for n in summary["notes"])  # other notes (a slope on few ranks) may be there
    assert (out / "umap.png").exists() and (out / "browser.html").exists()
    # refined, a token alone in its cluster has no other member to be like and joins the other: the outputs
    # list the quanta that kept members, never an empty one
    assert main(_args(tiny_run, out, "--n-tokens", "4", "--clusters", "2", "--over-cluster", "1")) == 0
    summary, listed = json.loads((out / "summary.json").read_text()), json.loads((out / "clusters.json").read_text())
    sizes = [c["size"] for c in summary["clusters"]]
    assert sizes == [4] and [c["size"] for c in listed] == sizes  # the other cluster emptied
    assert f"{len(sizes)} clusters" in (out / "browser.html").read_text()
    three = tiny_run / "three"
    assert main(_args(tiny_run, three, "--n-tokens", "3", "--clusters", "2", "--over-cluster", "1")) == 0
    summary = json.loads((three / "summary.json").read_text())
    assert summary["n_tokens"] == 3
    assert [n for n in summary["notes"] if "umap" in n] == ["umap.png not drawn: UMAP needs at least 4 points, got 3"]
    assert not (three / "umap.png").exists() and (three / "clusters.json").exists()
    assert main(_args(tiny_run, tiny_run / "four8", "--n-tokens", "4", "--clusters", "2")) == 2
    assert "--over-cluster × n_clusters (8 × 2) must be below n_tokens (4)" in capsys.readouterr().err


def test_discover_refuses_another_capture_in_the_same_folder(tiny_run, capsys):
    from quanta_interp.cli import main

    out = tiny_run / "refuse"
    assert main(_args(tiny_run, out, "--n-tokens", "20", "--clusters", "2")) == 0
    capsys.readouterr()
    assert main(_args(tiny_run, out, "--n-tokens", "20", "--clusters", "2", "--context", "12")) == 2
    err = _last_error(capsys)
    assert err.startswith("quanta discover: error: --context differs from the gradients stored in")


@pytest.mark.parametrize("extra, message", [
    (["--loss-threshold", "nan"], "--loss-threshold must be a finite number"),
    (["--loss-threshold", "0"], "--loss-threshold must be > 0.0"),
    (["--clusters", "500"], "--clusters must be between 2 and n_tokens (40)"),
    (["--params", "("], "--params '(' is neither a preset"),
    (["--projection-dim", "-1"], "--projection-dim must be a positive integer, or 0"),
    (["--context", "1"], "--context must be a number of tokens ≥ 2 or 'doc'"),
    (["--min-context", "16"], "--min-context must be smaller than context (16)"),
    (["--cluster-counts", "1,8"], "--cluster-counts must lie between 2 and n_tokens"),
    (["--fit-ranks", "5-900"], "--fit-ranks 5-900 go past the largest cluster count (10)"),
    (["--fit-ranks", "9-3"], "--fit-ranks must be (lo, hi) with 1 ≤ lo < hi"),
    (["--alpha-n", "no/such/summary.json"], "--alpha-n 'no/such/summary.json' is neither a number"),
    (["--device", "cuda"], "--device 'cuda' asked for, but CUDA is not available here"),
    (["--batch-tokens", "0"], "--batch-tokens must be a positive integer"),
])
def test_bad_settings_are_one_line_naming_the_flag_before_the_model_loads(tiny_run, capsys, monkeypatch, extra,
                                                                          message):
    import torch

    from quanta_interp import lm
    from quanta_interp.cli import main

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(lm, "load", no_model)
    out = tiny_run / "bad"
    assert main(_args(tiny_run, out, *extra)) == 2
    assert _last_error(capsys).startswith(f"quanta discover: error: {message}")
    assert not (out / "gradients").exists()


def test_a_threshold_that_keeps_no_token_says_what_to_change(tiny_run, capsys):
    from quanta_interp.cli import main

    assert main(_args(tiny_run, tiny_run / "none", "--loss-threshold", "1e-9")) == 2
    err = _last_error(capsys)
    assert err.startswith("quanta discover: error: loss_threshold 1e-09 keeps 0 tokens in the whole corpus")
    assert "raise loss_threshold" in err


def test_qdg_config_api_names_python_parameters_and_presets():
    with pytest.raises(ParameterError, match=r"^n_clusters must be between 2 and n_tokens \(100\)"):
        QDGConfig.build(n_tokens=100, n_clusters=101)
    paper = QDGConfig.preset("paper")
    assert (paper.n_tokens, paper.n_clusters, paper.context, paper.fit_ranks) == (10000, 400, "doc", (100, 900))
    assert len(paper.counts()) == 31 and paper.counts()[0] == 10 and paper.counts()[-1] == 1500  # 30 + n_clusters
    cpu = QDGConfig.build()
    assert cpu.n_tokens >= 2000 and cpu.n_clusters >= 60 and cpu.ranks() == (20, 180)
    assert QDGConfig.from_dict(cpu.to_dict()) == cpu
    assert QDGConfig.preset("paper", n_tokens=20000).n_tokens == 20000

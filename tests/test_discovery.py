"""QDG: token selection, clustering (dense and kNN) on known clusters, rank-frequency fits, and the
whole `quanta discover` job on a tiny trained model (outputs, escaping, resume, bad input)."""

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from quanta_interp.quanta.discovery import QuantaClustering, induction_mask, select_tokens
from quanta_interp.quanta.frequencies import envelope, rank_frequency_fit, rank_sizes


def clustered_unit_vectors(n: int, k: int, dim: int, noise: float, seed: int = 0):
    """Unit vectors around k random directions, with Zipf-distributed cluster sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    p = np.arange(1, k + 1) ** -1.2
    labels = rng.choice(k, n, p=p / p.sum())
    X = centres[labels] / np.sqrt(dim) + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return X / np.linalg.norm(X, axis=1, keepdims=True), labels


def test_induction_and_selection():
    doc = np.array([5, 6, 7, 1, 5, 6, 7, 2, 6, 7])
    assert induction_mask(doc).tolist() == [False] * 6 + [True] + [False] * 3
    loss = np.array([np.nan, 3, 0.01, 2, 0.05, 0.02, 0.01, 0.5, 0.09, 0.2])
    assert select_tokens([loss], [doc]).tolist() == [[0, 2], [0, 4], [0, 5], [0, 8]]
    assert select_tokens([loss], [doc], exclude_induction=False, min_pos=5).tolist() == [[0, 5], [0, 6], [0, 8]]
    picked = select_tokens([loss], [doc], max_tokens=2, seed=1)
    assert len(picked) == 2 and set(map(tuple, picked)) <= {(0, 2), (0, 4), (0, 5), (0, 8)}
    with pytest.raises(ValueError, match="keeps no token"):
        select_tokens([loss], [doc], threshold=0.001)


def test_dense_and_knn_recover_known_clusters():
    X, y = clustered_unit_vectors(600, 6, 40, noise=0.6)
    dense = QuantaClustering(6, random_state=0).fit(X * np.random.default_rng(1).uniform(0.1, 10, (600, 1)))
    assert adjusted_rand_score(y, dense.labels_) > 0.95  # row norms do not matter
    assert dense.affinity_.shape == (600, 600) and np.allclose(np.diag(dense.affinity_), 1, atol=1e-3)
    knn = QuantaClustering(6, method="knn", n_neighbors=15, random_state=0).fit(X)
    assert knn.affinity_.nnz < 600 * 35 and (knn.affinity_ != knn.affinity_.T).nnz == 0
    assert adjusted_rand_score(dense.labels_, knn.labels_) > 0.9
    assert len(np.unique(dense.labels_for(3))) == 3
    with pytest.raises(ValueError, match="clusters must be between"):
        QuantaClustering(601).fit(X)
    with pytest.raises(ValueError, match="method"):
        QuantaClustering(3, method="full").fit(X)


def test_rank_frequency_fit_recovers_a_zipf_slope():
    sizes = np.round(2000 * np.arange(1, 41) ** -1.5).astype(int)
    fit = rank_frequency_fit(sizes, alpha_n=0.083)
    assert fit["slope"] == pytest.approx(-1.5, abs=0.05) and fit["slope_ci"][0] <= fit["slope"] <= fit["slope_ci"][1]
    assert fit["predicted_slope"] == pytest.approx(-1.083)
    assert len(fit["range_sensitivity"]) >= 6 and all(-1.7 < r["slope"] < -1.3 for r in fit["range_sensitivity"])
    assert rank_sizes(np.array([2, 2, 0, 1, 2, 1])).tolist() == [3, 2, 1]
    assert envelope([np.array([5, 1]), np.array([4, 3, 2])]).tolist() == [5, 3, 2]


def test_sparse_parity_gradients_carry_subtask_signal():
    """Ground truth on a trained multitask-sparse-parity MLP. The issue's target (ARI ≥ 0.9 with
    n_clusters = learned subtasks) is NOT met (CPU scale: ARI 0.2–0.5, see artifacts/qdg_sparse_parity):
    a subtask's samples split further by their bit pattern and subtasks share hidden neurons. What holds,
    and is asserted: gradients of one subtask are markedly more aligned (|cos|) than gradients of
    different subtasks, and most aligned when the subtask's own bits match."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "analyses" / "qdg_sparse_parity.py"
    spec = importlib.util.spec_from_file_location("qdg_sparse_parity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.ground_truth_ari(quick=True)
    assert out["n_learned"] >= 2 and out["gradient_dim"] == 48 * 17 + 2 * 49
    assert out["mean_abs_cos_same_task"] > 1.4 * out["mean_abs_cos_other_task"]
    assert out["mean_abs_cos_same_task_same_pattern"] > 1.2 * out["mean_abs_cos_same_task_other_pattern"]


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
    lm.train(dict(n_layers=1, d_model=32, n_heads=2, n_ctx=32, d_vocab=corpus.vocab_size, steps=150,
                  batch_size=16, eval_every=1000), corpus.stream(), tokenizer=corpus.tokenizer,
             run_dir=root / "model", progress=False)
    yield root
    os.environ.pop("QUANTA_CACHE")


def test_quanta_discover_end_to_end(tiny_run, capsys):
    from quanta_interp.cli import main

    out = tiny_run / "out"
    args = ["discover", "--model", str(tiny_run / "model"), "--corpus", str(tiny_run / "text.txt"), "--out", str(out),
            "--n-tokens", "40", "--clusters", "4", "--context", "8", "--loss-threshold", "0.5", "--projection-dim", "0",
            "--keep-induction", "--alpha-n", "0.3"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["context_window"] == 8 and summary["settings"]["projection_dim"] == 0
    assert summary["n_tokens"] == sum(c["size"] for c in summary["clusters"]) >= 4
    assert [c["size"] for c in summary["clusters"]] == sorted((c["size"] for c in summary["clusters"]), reverse=True)
    assert summary["rank_frequency"]["predicted_slope"] == pytest.approx(-1.3)
    clusters = json.loads((out / "clusters.json").read_text())
    member = clusters[0]["members"][0]
    assert set(member) == {"doc", "pos", "doc_name", "context", "target", "loss"} and member["loss"] < 0.5
    assert len(member["context"]) == 8  # char model: 8 tokens of context are 8 characters
    for f in ("rank_frequency.png", "rank_frequency.svg", "umap.png"):
        assert (out / f).stat().st_size > 1000
    csv = (out / "rank_frequency.csv").read_text().splitlines()
    assert csv[0].startswith("rank,k2,") and csv[0].endswith(",envelope") and len(csv) == 5
    page = (out / "browser.html").read_text()
    assert "<script>alert" not in page and "\\u003c/" in page and "http" not in page.split("</head>")[1]
    # a rerun resumes: nothing is recomputed and the answer is the same
    mtime = (out / "gradients" / "gradients.npy").stat().st_mtime
    assert main(args) == 0 and (out / "gradients" / "gradients.npy").stat().st_mtime == mtime
    assert json.loads((out / "summary.json").read_text())["clusters"] == summary["clusters"]
    capsys.readouterr()
    bad = [(["--loss-threshold", "1e-9"], "keeps no token"), (["--clusters", "500"], "more than"),
           (["--params", "nothing_matches"], "matches no weight"), (["--projection-dim", "-1"], "projection-dim")]
    for i, (extra, message) in enumerate(bad):
        argv = args[:5] + ["--out", str(tiny_run / f"bad{i}")] + args[7:] + extra
        assert main(argv) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars: one line
        assert last.startswith("quanta discover: error: ") and message in last

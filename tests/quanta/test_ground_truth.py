"""QDG against known quanta: a tiny multitask-sparse-parity MLP trained in seconds, its per-sample gradients
clustered by the code path of `quanta discover`, scored against the true subtasks."""

import json

import numpy as np
import pytest

from quanta_interp.quanta.ground_truth import GroundTruthConfig, draw_samples, ground_truth
from quanta_interp.sparse_parity import MultitaskSparseParity, SparseParityConfig, train_sparse_parity

# 6 subtasks of 2 bits among 30, Zipf 1.4; weight decay makes each subtask its own hidden units (as the
# paper's task does at 500 subtasks); 4 subtasks are learned in ~4 s on one core.
TINY = SparseParityConfig(n_tasks=6, n_bits=30, k=2, zipf_exponent=1.4, width=64, steps=3000, batch_size=500,
                          lr=3e-3, weight_decay=0.3, log_every=500, eval_samples=200, seed=0)
METHODS = ("paper: spectral, angular", "unsigned, ×8 then merge", "unsigned, ×8, merge, refined (default)")


@pytest.fixture(scope="module")
def trained():
    model, result = train_sparse_parity(TINY)
    return model, result


def test_quanta_of_a_tiny_task_are_recovered_where_the_papers_clustering_is_not(trained):
    model, result = trained
    assert result["learned"] == [0, 1, 2, 3]
    out = ground_truth(model, MultitaskSparseParity.of(TINY), result["learned"], GroundTruthConfig(n_samples=600, methods=METHODS)).report
    assert out["n_samples"] == 600 and out["share_from_learned"] > 0.9
    g = out["geometry"]  # a subtask's samples split by their bit pattern, and subtasks are well apart
    assert g["same_subtask_same_pattern"] > g["same_subtask_other_pattern"] > 1.5 * g["other_subtask"]
    default, paper = out["methods"][METHODS[2]], out["methods"][METHODS[0]]
    assert default["ari"] >= 0.85 and default["fine_homogeneity"] >= 0.8
    assert default["fine_homogeneity_learned"] >= 0.8 and 0 < default["fine_homogeneity_patterns"] <= 1
    assert paper["ari"] < 0.4  # the angular affinity's 0.5 floor for orthogonal gradients hides the structure
    sizes = np.array(sorted(out["subtasks"].values(), reverse=True))
    assert sizes[0] > 2 * sizes[1] > 2 * sizes[3]  # samples follow the Zipf frequencies of the task
    assert out["truth_fit"]["predicted_slope"] == -1.4 and out["fit_ranks"] == [1, 4] and out["learned_prefix"] == 4
    # −(α + 1) holds over the subtasks learned before the first unlearned one: 0, 1 (then at least 3 ranks)
    gap = ground_truth(model, MultitaskSparseParity.of(TINY), [0, 1, 3], GroundTruthConfig(n_samples=300, methods=METHODS[2:])).report
    assert gap["learned_prefix"] == 2 and gap["fit_ranks"] == [1, 3] and gap["methods"][METHODS[2]]["refine"] == 10


def test_the_default_row_is_what_quanta_discover_runs():
    from quanta_interp.quanta.config import QDGConfig
    from quanta_interp.quanta.ground_truth import METHODS as ROWS

    defaults = [(a, o, r) for name, a, o, r in ROWS if name.endswith("(default)")]
    c = QDGConfig.build()
    assert defaults == [(c.affinity, c.over_cluster, c.refine)] and ROWS[-1][0] == METHODS[2]


def test_bad_input_is_one_line_naming_what_to_change(trained):
    model, result = trained
    task = MultitaskSparseParity.of(TINY)
    with pytest.raises(ValueError, match="only 1 subtask"):
        ground_truth(model, task, [0], GroundTruthConfig(n_samples=100))
    with pytest.raises(ValueError, match=r"loss_threshold 1e-30 keeps no sample of \d+ drawn; raise it"):
        ground_truth(model, task, result["learned"], GroundTruthConfig(n_samples=50, loss_threshold=1e-30))
    with pytest.raises(ValueError, match=r"^8 samples cannot fill 2\^k × 2 = 8 clusters; raise n_samples"):
        ground_truth(model, task, result["learned"], GroundTruthConfig(n_samples=8))  # 2 learned subtasks drawn
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        GroundTruthConfig(n_samples=0)


def test_samples_are_drawn_from_the_task_distribution_and_kept_by_loss(trained):
    model, _ = trained
    x, y, subtask, pattern, drawn = draw_samples(model, MultitaskSparseParity.of(TINY), 300, loss_threshold=0.1, seed=3)
    assert len(subtask) == 300 and drawn >= 300 and set(np.unique(pattern)) <= {0, 1, 2, 3}
    assert np.array_equal(x[:, :6].argmax(1).numpy(), subtask)


def test_cli_trains_then_scores_a_run(tmp_path, capsys):
    from quanta_interp.cli import main

    flags = ["--n-tasks", "6", "--n-bits", "30", "--k", "2", "--zipf-exponent", "1.4", "--width", "64", "--steps",
             "3000", "--batch-size", "500", "--lr", "3e-3", "--weight-decay", "0.3", "--log-every", "500"]
    assert main(["sparse-parity", "train", *flags, "--out", str(tmp_path / "run")]) == 0
    assert main(["sparse-parity", "qdg", str(tmp_path / "run"), "--n-samples", "400"]) == 0
    report = json.loads((tmp_path / "run" / "qdg.json").read_text())
    assert report["methods"]["unsigned, ×8, merge, refined (default)"]["ari"] >= 0.8
    assert "ARI" in capsys.readouterr().out
    assert main(["sparse-parity", "qdg", str(tmp_path / "none")]) == 2
    import torch

    if not torch.cuda.is_available():  # the model goes where --device says, or the command refuses
        capsys.readouterr()
        assert main(["sparse-parity", "qdg", str(tmp_path / "run"), "--device", "cuda"]) == 2
        assert "device" in capsys.readouterr().err

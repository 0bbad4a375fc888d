"""Multitask sparse parity: the generator, per-subtask metrics, batched training, neuron ablation."""

import copy
import math

import numpy as np
import pytest
import torch

from quanta_interp.io import RunDir
from quanta_interp.sparse_parity.ablation import ablation_matrix, carriers
from quanta_interp.sparse_parity.config import SparseParityConfig
from quanta_interp.sparse_parity.task import MultitaskSparseParity
from quanta_interp.sparse_parity.training import build_mlp, train_sparse_parity, train_sparse_parity_batched

# Learns its 2–4 most frequent subtasks in a few hundred steps on one core.
SMALL = SparseParityConfig(n_tasks=8, n_bits=8, k=3, zipf_exponent=1.5, width=48, steps=400, batch_size=400,
                           lr=1e-2, seed=0, log_every=100, eval_samples=200)


def test_labels_are_parities_of_the_subsets_and_control_bits_name_the_task():
    task = MultitaskSparseParity(20, 12, 3, 1.4, seed=3)
    x, y, t = task.sample(4000, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == (4000, 32) and y.dtype == t.dtype == torch.int64
    assert torch.equal(x[:, :20].argmax(1), t) and torch.all(x[:, :20].sum(1) == 1)
    bits = x[:, 20:].numpy().astype(int)
    expected = bits[np.arange(4000)[:, None], task.subsets[t.numpy()]].sum(1) % 2
    assert np.array_equal(y.numpy(), expected)
    assert 0.45 < y.float().mean() < 0.55
    assert len({tuple(s) for s in task.subsets.tolist()}) == 20 and task.subsets.shape == (20, 3)
    assert np.all(np.diff(np.sort(task.subsets, 1), axis=1) > 0)  # k distinct bits per subset
    xs, ys = task.sample_task(7, 300, generator=torch.Generator().manual_seed(1))
    assert torch.all(xs[:, 7] == 1) and torch.all(xs[:, :20].sum(1) == 1)
    assert np.array_equal(ys.numpy(), xs[:, 20:].numpy().astype(int)[:, task.subsets[7]].sum(1) % 2)


def test_task_frequencies_follow_zipf():
    task = MultitaskSparseParity(30, 10, 3, 1.5, seed=0)
    assert task.alpha == pytest.approx(0.5)
    assert np.allclose(task.probs / task.probs[0], np.arange(1, 31) ** -1.5) and task.probs.sum() == pytest.approx(1)
    _, _, t = task.sample(200_000, generator=torch.Generator().manual_seed(0))
    freq = np.bincount(t.numpy(), minlength=30) / 200_000
    sigma = np.sqrt(task.probs * (1 - task.probs) / 200_000)
    assert np.all(np.abs(freq - task.probs) < 5 * sigma)
    slope = np.polyfit(np.log(np.arange(1, 11)), np.log(freq[:10]), 1)[0]
    assert slope == pytest.approx(-1.5, abs=0.05)


@pytest.mark.parametrize("args, message", [
    ((5, 4, 5, 1.5), "k must be ≤ n_bits"),
    ((11, 5, 3, 1.5), "n_tasks must be ≤ C\\(n_bits, k\\) = 10"),
    ((5, 8, 3, 0.0), "zipf_exponent"),
    ((0, 8, 3, 1.5), "n_tasks must be a positive integer"),
])
def test_bad_task_arguments_raise_one_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        MultitaskSparseParity(*args)


def test_bad_training_config_raises():
    with pytest.raises(ValueError, match="width must be a positive integer"):
        train_sparse_parity(SMALL.replace(width=0))
    with pytest.raises(ValueError, match="may differ only in width, seed, n_train; they differ in lr"):
        train_sparse_parity_batched([SMALL, SMALL.replace(lr=0.1)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SMALL trained once, into a run folder; tests must not modify the model."""
    run = RunDir(tmp_path_factory.mktemp("sp") / "run", SMALL.to_dict())
    model, result = train_sparse_parity(SMALL, run)
    return model, result, run


def test_training_learns_frequent_subtasks_first_and_logs_per_subtask_metrics(trained):
    model, result, run = trained
    assert result["loss_unit"] == "bits" and len(result["per_task_loss"]) == len(result["per_task_acc"]) == 8
    loss = np.array(result["per_task_loss"])
    assert 0 in result["learned"] and loss[0] < 0.1 and result["per_task_acc"][0] > 0.97
    assert loss[-1] > 0.5 and result["n_learned"] == len(result["learned"]) == int(np.sum(loss < 0.1))
    assert result["test_loss"] == pytest.approx(float(loss @ MultitaskSparseParity(8, 8, 3, 1.5).probs), rel=1e-5)
    learned_at = result["steps_to_learn"]
    assert learned_at[0] is not None and all(s is None or s >= learned_at[0] for s in learned_at)
    rows = run.metrics()
    assert [r["step"] for r in rows] == [0, 100, 200, 300, 400]
    assert all(len(r["per_task_loss"]) == len(r["per_task_acc"]) == 8 for r in rows)
    assert rows[0]["per_task_loss"][0] > 0.8 and rows[-1]["per_task_loss"] == pytest.approx(result["per_task_loss"])
    # the returned model is a plain MLP on encoded inputs, and its saved weights reproduce it
    task = MultitaskSparseParity(8, 8, 3, 1.5)
    x, y = task.sample_task(0, 1000, generator=torch.Generator().manual_seed(5))
    logits = model(x)
    assert logits.shape == (1000, 2) and (logits.argmax(1) == y).float().mean() > 0.97
    reloaded = build_mlp(16, 48)
    reloaded.load_state_dict(run.load_weights())
    assert torch.allclose(reloaded(x), logits)


def test_batched_training_equals_training_each_config_alone():
    short = SMALL.replace(steps=60, log_every=20)
    configs = [short.replace(width=6, seed=1), short.replace(width=32, seed=1),
               short.replace(width=20, seed=2, n_train=300)]
    models, results = train_sparse_parity_batched(configs)
    for cfg, m, r in zip(configs, models, results, strict=True):
        alone_model, alone = train_sparse_parity(cfg)
        assert r["per_task_loss"] == pytest.approx(alone["per_task_loss"], abs=1e-5)
        assert r["curve"]["train_loss"][1:] == pytest.approx(alone["curve"]["train_loss"][1:], abs=1e-5)
        for (name, a), b in zip(m.state_dict().items(), alone_model.state_dict().values(), strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), name
    # members really differ: widths, seeds and datasets change the outcome
    assert results[0]["per_task_loss"] != pytest.approx(results[1]["per_task_loss"], abs=1e-3)
    deep = [short.replace(steps=30, depth=2, width=w, activation="tanh") for w in (5, 9)]
    for m, cfg in zip(train_sparse_parity_batched(deep)[0], deep, strict=True):
        alone = train_sparse_parity(cfg)[0]
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(m.parameters(), alone.parameters(), strict=True))


def test_ablation_matrix_finds_the_neurons_of_a_learned_subtask(trained):
    model = copy.deepcopy(trained[0])
    task = MultitaskSparseParity(8, 8, 3, 1.5)
    m = ablation_matrix(model, task, 400, torch.Generator().manual_seed(0))
    inc = torch.tensor(m.increase)
    assert inc.shape == (48, 8) and m.base_loss[0] < 0.1 and list(m.to_dict()) == ["loss_unit", "base_loss", "increase"]
    carry = carriers(m.increase, 0.1)
    assert carry[0] and all(inc[j, 0] > 0.1 for j in carry[0])
    # one entry recomputed by zeroing that unit's outgoing weights in the plain model
    j = carry[0][0]
    x, y = task.sample_task(0, 400, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[-1].weight[:, j] = 0
        ablated = torch.nn.functional.cross_entropy(model(x), y).item() / math.log(2)
    assert ablated - m.base_loss[0] == pytest.approx(inc[j, 0].item(), abs=1e-4)


def test_unit_attribution_of_the_margin_is_exactly_zero_ablation():
    """The readout is linear in the last hidden layer, so the first-order estimate of zeroing unit j on the logit
    margin is exact: A_j equals the summed margin change when h_j is set to 0."""
    from quanta_interp.config import ParameterError
    from quanta_interp.sparse_parity.ablation import unit_attribution

    torch.manual_seed(0)
    model = build_mlp(16, 12)
    x, y = torch.randn(40, 16), torch.randint(0, 2, (40,))
    a = unit_attribution(model, x, y, "margin")

    def margin(h):
        logits = model[-1](h)
        return (logits.gather(1, 1 - y[:, None]) - logits.gather(1, y[:, None])).sum().item()

    with torch.no_grad():
        h = model[:-1](x)
        exact = [margin(h * (torch.arange(12) != j)) - margin(h) for j in range(12)]
    np.testing.assert_allclose(a, exact, rtol=1e-4, atol=1e-4)
    assert unit_attribution(model, x, y, "loss").shape == (12,)
    with pytest.raises(ParameterError, match="^metric must be 'loss' or 'margin'"):
        unit_attribution(model, x, y, "accuracy")

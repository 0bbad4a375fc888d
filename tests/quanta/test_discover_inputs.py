"""`quanta discover` on a run folder that cannot lie: the corpus known by its content, every input checked
before anything is written (a refused run leaves the folder as it found it), one writer per folder, a kill
resumed without extra rows, damaged files named with their fix, damaged rows recaptured."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

LINE = "To be, or not to be: that is the question {i}.\n<script>alert('x')</script> & more\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 1-layer char model trained briefly on a small text, and one finished discover run on it."""
    import os

    from quanta_interp import lm
    from quanta_interp.cli import main
    from quanta_interp.corpora import load_corpus

    root = tmp_path_factory.mktemp("inputs")
    os.environ["QUANTA_CACHE"] = str(root / "cache")
    (root / "text.txt").write_text("".join(LINE.format(i=i % 7) for i in range(120)))
    corpus = load_corpus(str(root / "text.txt"), "char", val_fraction=0.0)
    lm.train(lm.TrainConfig(n_layers=1, d_model=32, n_heads=2, n_ctx=32, d_vocab=corpus.vocab_size, steps=150,
                            batch_size=16, eval_every=1000), corpus.stream(), tokenizer=corpus.tokenizer,
             run_dir=root / "model", progress=False)
    assert main(_args(root, root / "base")) == 0
    yield root
    os.environ.pop("QUANTA_CACHE")


def _args(root, out, *extra, corpus=None):
    return ["discover", "--model", str(root / "model"), "--corpus", str(corpus or root / "text.txt"), "--out",
            str(out), "--n-tokens", "40", "--clusters", "4", "--context", "16", "--min-context", "8",
            "--loss-threshold", "0.5", "--projection-dim", "0", "--keep-induction", "--batch-tokens", "64", *extra]


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def _quanta(out) -> list:
    """The partition clusters.json holds: each quantum's members as (doc, pos), quanta sorted (labels aside)."""
    clusters = json.loads((out / "clusters.json").read_text())
    return sorted(sorted((m["doc"], m["pos"]) for m in c["members"]) for c in clusters)


def _no_model(monkeypatch):
    from quanta_interp import lm

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(lm, "load", no_model)


def test_an_edited_corpus_is_refused_and_the_same_file_by_another_path_is_accepted(tiny, capsys, monkeypatch):
    from quanta_interp.cli import main

    corpus, out = tiny / "c.txt", tiny / "mix"
    corpus.write_text("".join(LINE.format(i=i % 7) for i in range(60)))
    assert main(_args(tiny, out, "--n-tokens", "20", "--clusters", "2", corpus=corpus)) == 0
    identity = json.loads((out / "identity.json").read_text())
    assert identity["corpus"].startswith("sha256:") and identity["corpus_source"] == str(corpus)
    monkeypatch.chdir(tiny)
    _no_model(monkeypatch)  # the same file by a relative path: the same corpus, re-analysed without the model
    assert main(_args(tiny, "mix", "--n-tokens", "20", "--clusters", "2", "--n-init", "3", corpus="c.txt")) == 0
    assert _summary(out)["settings"]["n_init"] == 3
    corpus.write_text("".join(LINE.format(i=(i + 3) % 7) for i in range(60)))  # same characters, other text
    capsys.readouterr()
    assert main(_args(tiny, out, "--n-tokens", "30", "--clusters", "2", corpus=corpus)) == 2
    assert _last_error(capsys) == (f"quanta discover: error: --corpus '{corpus}': the corpus changed since the "
                                   f"capture in {out} (its files' names or bytes differ from those captured): use a "
                                   "new --out")
    assert _summary(out)["n_tokens"] == 20  # nothing of the new corpus joined the capture


def test_an_identity_that_holds_the_corpus_path_is_accepted_with_a_note_and_upgraded(tiny, monkeypatch):
    from quanta_interp.cli import main

    out = tiny / "legacy"
    shutil.copytree(tiny / "base", out)
    identity = json.loads((out / "identity.json").read_text())
    identity["corpus"] = str(tiny / "text.txt")  # what identity.json held before corpora were known by content
    del identity["corpus_source"]
    (out / "identity.json").write_text(json.dumps(identity))
    _no_model(monkeypatch)
    assert main(_args(tiny, out)) == 0
    assert (f"identity.json predates corpus digests: the corpus at {tiny / 'text.txt'} is taken to be the one "
            "captured, and its digest is recorded from now on") in _summary(out)["notes"]
    upgraded = json.loads((out / "identity.json").read_text())
    assert upgraded["corpus"] == json.loads((tiny / "base" / "identity.json").read_text())["corpus"]


def test_a_refused_run_leaves_the_folder_as_it_found_it(tiny, capsys):
    from quanta_interp.cli import main

    empty, out = tiny / "e.txt", tiny / "l"
    empty.write_text("")
    assert main(_args(tiny, out, corpus=empty)) == 2
    assert _last_error(capsys) == (f"quanta discover: error: --corpus '{empty}' cannot be used: corpus '{empty}' has "
                                   "no non-empty documents")
    assert not out.exists()
    (tiny / "z.txt").write_text("ZZZ qqq\n")
    assert main(_args(tiny, out, corpus=tiny / "z.txt")) == 2  # known only once the model's tokenizer is loaded
    assert "characters 'Z' (1 in all) are not in this char tokenizer's vocabulary" in _last_error(capsys)
    assert not out.exists()
    out.mkdir()
    assert main(_args(tiny, out, "--family", f"{tiny / 'model'},{tiny / 'nope'},{tiny / 'model2'}")) == 2
    assert _last_error(capsys).startswith(f"quanta discover: error: --family member nope: model path "
                                          f"'{tiny / 'nope'}' does not exist")
    assert list(out.iterdir()) == []
    assert main(_args(tiny, out)) == 0 and _quanta(out) == _quanta(tiny / "base")


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["--n-tokens", "100000000000000"], "--n-tokens must be at most 10,000,000 (a store of n_tokens × projection_dim"),
    (["--n-tokens", "2000000", "--projection-dim", "8192"], "--n-tokens must be at most 1,953,125"),
    (["--model", "./no/such/model"], "--model './no/such/model': model path './no/such/model' does not exist"),
    (["--params", "no_such_matrix"], "--params 'no_such_matrix' matches no weight matrix; accepted: all, mlp, attn"),
])
def test_bad_inputs_are_refused_before_the_model_loads_or_a_file_is_written(tiny, capsys, monkeypatch, extra,
                                                                          message):
    from quanta_interp.cli import main

    _no_model(monkeypatch)
    out = tiny / "bad"
    assert main(_args(tiny, out, *extra)) == 2
    assert _last_error(capsys).startswith(f"quanta discover: error: {message}")
    assert not out.exists()


def test_a_context_longer_than_the_model_is_capped_with_one_note(tiny, capsys):
    from quanta_interp.cli import main

    out = tiny / "long"
    assert main(_args(tiny, out, "--context", "99999", "--n-tokens", "20", "--clusters", "2")) == 0
    note = "context 99999 is longer than the model's n_ctx = 32; capped at 32 tokens"
    assert _summary(out)["notes"].count(note) == 1 and _summary(out)["block_length"] == 32
    assert capsys.readouterr().out.count(note) == 1


def test_a_kill_mid_capture_leaves_rows_pending_and_the_rerun_captures_only_them(tiny, monkeypatch):
    from quanta_interp import capture
    from quanta_interp.cli import main

    out, calls = tiny / "killed", {"n": 0}
    real = capture.store.per_token_gradients

    def killed_after_four_batches(*a, **k):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt  # what a kill leaves: 16 rows captured, 24 pending
        return real(*a, **k)

    monkeypatch.setattr(capture.store, "per_token_gradients", killed_after_four_batches)
    assert main(_args(tiny, out)) == 130
    status = np.load(out / "gradients" / "status.npy")
    assert (status == 1).sum() == 16 and len(status) == 40
    monkeypatch.setattr(capture.store, "per_token_gradients", real)
    assert main(_args(tiny, out)) == 0
    assert len(np.load(out / "gradients" / "status.npy")) == 40  # not 64: pending rows are not failures
    np.testing.assert_allclose(np.load(out / "gradients" / "gradients.npy"),
                               np.load(tiny / "base" / "gradients" / "gradients.npy"), atol=1e-5)
    assert _quanta(out) == _quanta(tiny / "base")


def test_a_second_writer_is_refused_naming_the_first(tiny, capsys):
    from quanta_interp.cli import main

    out = tiny / "busy"
    code = textwrap.dedent(f"""
        import time
        from quanta_interp.io import RunLock
        RunLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(_args(tiny, out)) == 2
        assert _last_error(capsys).startswith(f"quanta discover: error: {out} is being written by another process "
                                              f"(pid {proc.pid}, started ")
    finally:
        proc.kill()
        proc.wait()
    assert main(_args(tiny, out)) == 0
    assert _summary(out)["notes"][0].startswith(f"{out} was left locked by a process that is no longer running "
                                                f"(pid {proc.pid}")


def _truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


@pytest.mark.parametrize("name, damage, problem", [
    ("identity.json", lambda p: p.write_text("[1]"), "holds a list, not a JSON object"),
    ("identity.json", lambda p: p.write_text("garbage"), "not valid JSON: Expecting value at character 0"),
    ("gradients/capture.json", lambda p: p.unlink(), "missing, while the store's arrays are there"),
    ("gradients/capture.json", lambda p: p.write_text("garbage"), "not valid JSON"),
    ("gradients/status.npy", _truncate, "not a readable .npy array"),
    ("gradients/status.npy", lambda p: np.save(p, np.ones(20, np.int8)), "has shape (20,), not (40)"),
    ("gradients/status.npy", lambda p: p.write_bytes(b"\x93NUMPY garbage" * 20), "not a readable .npy array"),
    ("gradients/losses.npy", lambda p: np.save(p, np.zeros(40, np.float64)), "holds float64, not float32"),
    ("gradients/targets.npy", lambda p: p.write_bytes(b""), "empty"),
    ("targets.json", lambda p: p.write_text("{}"), "holds a dict, not a JSON list"),
    ("targets.json", lambda p: p.write_text("[]"), "lists 0 target records where 40 are captured"),
    ("state.json", lambda p: p.write_text(""), "empty"),
    ("state.json", lambda p: p.write_text("[]"), "holds a list, not a JSON object"),
    ("scan/state.json", lambda p: p.write_text('{"seconds": 1}'), "lacks the scan's tokens_scored"),
    ("scan/candidates.npy", _truncate, "not a readable .npy array"),
    ("model_info.json", lambda p: p.write_text("[]"), "holds a list, not a JSON object"),
])
def test_a_damaged_run_folder_file_is_one_line_naming_it_never_used(tiny, capsys, monkeypatch, name, damage,
                                                                     problem):
    from quanta_interp.cli import main

    out = tiny / "damaged"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(tiny / "base", out)
    (out / "state.json").write_text("{}")
    _no_model(monkeypatch)
    damage(out / name)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert main(_args(tiny, out)) == 2
    assert _last_error(capsys).startswith(f"quanta discover: error: {out / name} is damaged ({problem}")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_garbage_in_the_gradients_is_refused_and_recaptured_to_the_undisturbed_result(tiny, capsys):
    from quanta_interp.cli import main

    out = tiny / "garbage"
    shutil.copytree(tiny / "base", out)
    path = out / "gradients" / "gradients.npy"
    raw = bytearray(path.read_bytes())
    row = 4 * json.loads((out / "gradients" / "capture.json").read_text())["dim"]  # bytes per row
    start = len(raw) - 30 * row  # row 10 of 40
    raw[start: start + 400] = np.random.default_rng(0).bytes(400)
    path.write_bytes(bytes(raw))
    assert main(_args(tiny, out)) == 2
    err = _last_error(capsys)
    assert err.startswith(f"quanta discover: error: {path} is damaged (1 of 40 captured rows differ from the checksums")
    assert err.endswith("rerun with --recapture to capture those rows again (capture_gradients(recapture=True)), or "
                        "use a new --out")
    assert main(_args(tiny, out, "--recapture")) == 0
    assert "recaptured 1 damaged rows of the gradient store" in _summary(out)["notes"]
    np.testing.assert_allclose(np.load(path), np.load(tiny / "base" / "gradients" / "gradients.npy"), atol=1e-5)
    assert _quanta(out) == _quanta(tiny / "base")


KILL = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)  # as in the test session
    from quanta_interp.capture import store
    from quanta_interp.quanta import frequencies, scan
    from quanta_interp.cli import main

    stage, calls = sys.argv[1], {"n": 0}

    def killing(real, when):
        def wrapper(*a, **k):
            if when(*a):
                calls["n"] += 1
                if calls["n"] >= 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        return wrapper

    always = lambda *a: True
    if stage == "scan":
        scan._block_losses = killing(scan._block_losses, always)
    elif stage == "capture":
        store.per_token_gradients = killing(store.per_token_gradients, always)
    elif stage == "before-status":  # gradients, checksums and losses of a batch written, its status not
        store.atomic_save_npy = killing(store.atomic_save_npy, lambda path, arr: path.name == "status.npy")
    elif stage == "allocation":  # the store allocated, capture.json not yet written
        calls["n"] = 1
        store.atomic_write_json = killing(store.atomic_write_json, always)
    elif stage == "analysis":  # the first output of the analysis
        calls["n"] = 1
        frequencies.write_rank_frequency = killing(frequencies.write_rank_frequency, always)
    main(sys.argv[2:])
""")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["scan", "capture", "before-status", "allocation", "analysis"])
def test_a_kill_9_at_any_stage_is_completed_by_a_rerun_to_the_undisturbed_result(tiny, stage):
    from quanta_interp.cli import main

    out = tiny / f"kill-{stage}"
    run = subprocess.run([sys.executable, "-c", KILL, stage, *_args(tiny, out)], capture_output=True, text=True)
    assert run.returncode == -9, run.stderr[-800:]
    assert not (out / "summary.json").exists()
    assert main(_args(tiny, out)) == 0
    np.testing.assert_allclose(np.load(out / "gradients" / "gradients.npy"),
                               np.load(tiny / "base" / "gradients" / "gradients.npy"), atol=1e-5)
    assert _quanta(out) == _quanta(tiny / "base")
    assert _summary(out)["notes"][0].startswith(f"{out} was left locked by a process that is no longer running")


def test_family_members_are_checked_before_any_model_loads(tmp_path):
    from quanta_interp.config import ParameterError
    from quanta_interp.quanta.family import check_members

    members = []
    for name, size in (("a", 300), ("b", 200), ("c", 400)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_config.json").write_text("{}")
        (tmp_path / name / "weights.safetensors").write_bytes(b"")
        members.append({"name": name, "spec": str(tmp_path / name), "n_params": size})
    with pytest.raises(ParameterError, match=r"^family members must grow in non-embedding size in family order, got "
                                             r"a 300, b 200, c 400; list them smallest first"):
        check_members(members)
    check_members(members, steps=True)  # checkpoints of one model: the steps are the scale
    (tmp_path / "b" / "weights.safetensors").unlink()
    with pytest.raises(ParameterError, match=f"^family member b: run folder {tmp_path / 'b'} has no weights"):
        check_members(members, steps=True)

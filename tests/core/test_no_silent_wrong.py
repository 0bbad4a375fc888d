"""Issue #30 outside `quanta discover`: a model reads only its own tokenizer's ids, a refused run writes nothing,
every numeric answer is finite or refused, and adjusted requests say so. Each case is one test that fails on
the old behaviour (a fresh char vocabulary fed to a char model, NaN printed with exit 0, …)."""

import json

import numpy as np
import pytest

from quanta_interp.cli import main

TEXT = "To be, or not to be, that is the Question: the quick brown fox jumps over the lazy dog\n" * 30
UNSEEN = "Zebra #1 & [Q]\n"  # '#&1Z[]' are not in TEXT


@pytest.fixture(scope="module")
def char_model(tmp_path_factory):
    """A 1-layer char model (3 steps) trained on mixed-case text, and a 2-document lower-cased copy of it: the
    copy has fewer characters, so a char vocabulary built from it numbers them differently."""
    from quanta_interp import lm
    from quanta_interp.corpora import Document, make_tokenizer

    root = tmp_path_factory.mktemp("nsw")
    tok = make_tokenizer("char", [Document("t", TEXT)])
    cfg = lm.TrainConfig(d_vocab=tok.vocab_size, n_layers=1, d_model=16, n_heads=1, n_ctx=16, steps=3,
                         batch_size=4, warmup=1, eval_every=3, checkpoint_every=3)
    lm.train(cfg, np.array(tok.encode(TEXT)), tokenizer=tok, run_dir=root / "model", progress=False)
    (root / "lower").mkdir()
    half = len(TEXT) // 2
    (root / "lower" / "a.txt").write_text(TEXT[:half].lower())
    (root / "lower" / "b.txt").write_text(TEXT[half:].lower())
    (root / "unseen.txt").write_text(UNSEEN * 50)
    return root


def _stub_lm_report(monkeypatch):
    """Replace the LM part of langstats (minutes of γ fits) by a recorder of the ids the model is fed."""
    from quanta_interp.fitting import PowerLawFit
    from quanta_interp.langstats import pipeline
    from quanta_interp.langstats.fits import GammaFit

    seen = {}

    def report(model, tokens, *, n_ctx, seed, progress):
        seen.update(tokens=np.asarray(tokens), n_ctx=n_ctx, progress=progress)
        fit = GammaFit(PowerLawFit(0.5, (0.4, 0.6), 1.0, 0.0, (1.0, 1.0), 1.0, 1), [], None, "raw log-log")
        return pipeline.GammaReport(np.array([1]), np.array([1.0]), [1, 1], fit, fit)

    monkeypatch.setattr(pipeline, "lm_entropy_report", report)
    return seen


@pytest.mark.parametrize("split, lm_split", [(None, "val"), ("all", "all")])
def test_langstats_entropy_feeds_the_model_its_own_ids(char_model, tmp_cache, monkeypatch, split, lm_split):
    from quanta_interp.corpora import Document, Tokenizer, make_tokenizer

    seen = _stub_lm_report(monkeypatch)
    out = char_model / f"entropy-{lm_split}"
    argv = ["langstats", "entropy", "--corpus", str(char_model / "lower"), "--model", str(char_model / "model"),
            "--n-ctx", "8", "--out", str(out)] + (["--split", split] if split else [])
    assert main(argv) == 0
    model_tok = Tokenizer.load(char_model / "model" / "tokenizer.json")
    docs = {p.name: p.read_text() for p in sorted((char_model / "lower").glob("*.txt"))}
    text = model_tok.decode(seen["tokens"])
    assert text == "".join(docs.values()) if lm_split == "all" else text in docs.values()  # val: one of the two
    assert seen["n_ctx"] == 8 and seen["progress"] is True
    # the old path: a char vocabulary built from the lower-cased copy numbers the same text otherwise
    fresh = make_tokenizer("char", [Document(k, v) for k, v in docs.items()])
    assert fresh.encode(text) != model_tok.encode(text)
    rep = json.loads((out / "entropy.json").read_text())
    assert rep["tokenizer"] == "char" and rep["lm"]["split"] == lm_split and rep["split"] == (split or "train")


@pytest.mark.parametrize("argv, message", [
    (["--corpus", "UNSEEN"], "holds characters '#&1Z[]' (6 in all) that the model's own vocabulary lacks"),
    (["--corpus", "LOWER", "--n-ctx", "99"], "--n-ctx (99) exceeds the context of model"),
    (["--corpus", "LOWER/a.txt"], "--split 'val' of corpus"),  # one document: no held-out split for the LM
])
def test_langstats_entropy_refuses_what_the_model_cannot_read(char_model, tmp_cache, capsys, argv, message):
    swap = {"UNSEEN": str(char_model / "unseen.txt"), "LOWER": str(char_model / "lower")}
    argv = [swap.get(a, a.replace("LOWER", swap["LOWER"])) for a in argv]
    out = char_model / "refused"
    assert main(["langstats", "entropy", *argv, "--model", str(char_model / "model"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_lm_losses_and_neurons_refuse_characters_the_model_never_saw(char_model, tmp_cache, capsys):
    for argv in (["lm", "losses", "--model", str(char_model / "model")],
                 ["neurons", "layer", "--layer", "0", "--model", str(char_model / "model")]):
        out = char_model / "refused"
        assert main([*argv, "--corpus", str(char_model / "unseen.txt"), "--out", str(out)]) == 2
        assert "--corpus" in (err := capsys.readouterr().err) and "model's own vocabulary lacks" in err, err
        assert not out.exists()


@pytest.mark.parametrize("prompt, message", [
    ("", "--prompt '' has no token"),  # was a tensor-size error from inside the model
    ("Zebra #1", "--prompt 'Zebra #1' holds characters '#1Z' (3 in all) that the model's own vocabulary lacks"),
])
def test_lm_load_prompt_is_checked_against_the_vocabulary(char_model, capsys, prompt, message):
    assert main(["lm", "load", str(char_model / "model"), "--prompt", prompt]) == 2
    assert message in capsys.readouterr().err


def test_lm_losses_context_is_checked_against_the_model(char_model, tmp_cache, capsys):
    base = ["lm", "losses", "--model", str(char_model / "model"), "--corpus", str(char_model / "lower")]
    assert main([*base, "--context", "999", "--out", str(char_model / "refused")]) == 2
    assert "--context (999) exceeds the model's n_ctx (16); pass at most 16" in capsys.readouterr().err
    assert not (char_model / "refused").exists()
    assert main([*base, "--out", str(char_model / "losses")]) == 0  # the default 64 is capped, and says so
    assert "note: context 16 tokens, the model's n_ctx" in capsys.readouterr().out
    assert json.loads((char_model / "losses" / "summary.json").read_text())["context"] == 16


def test_fits_on_few_points_say_their_interval_is_not_trustworthy(char_model, tmp_cache, capsys):
    assert main(["langstats", "correlations", "--corpus", str(char_model / "lower"), "--lags", "1,2,4",
                 "--floor-factor", "0", "--out", str(char_model / "corr")]) == 0
    out = capsys.readouterr().out
    assert "note: beta (op norm) rests on 3 points; a bootstrap of so few barely varies" in out, out


def test_langstats_measure_checks_budgets_before_the_sweep_opens(char_model, tmp_cache, capsys):
    out = char_model / "measure"  # 'lower' has one training document of ~1300 characters
    assert main(["langstats", "measure", "--corpus", str(char_model / "lower"), "--budgets", "100,400,1600,6400",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--budgets must lie between one window (n_ctx + 1 = 65) and the 1305 training tokens" in err, err
    assert not out.exists()  # the old sweep trained the smaller budgets, then failed on the largest


def test_passuntil_run_refuses_instances_outside_the_vocabulary_before_writing(char_model, tmp_cache, capsys):
    out = char_model / "pu"
    assert main(["passuntil", "run", "--model", str(char_model / "model"), "--task", "addition", "--n-instances", "2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--task instance" in err and "+" in err.split("holds characters")[1].split("that")[0], err
    assert not out.exists()  # an unreadable prompt would have made PU 0 for a reason that is not skill


def test_load_family_refuses_members_with_different_tokenizers(char_model, tmp_path, monkeypatch):
    from quanta_interp import lm
    from quanta_interp.corpora import Document, make_tokenizer
    from quanta_interp.lm import scaling

    other = make_tokenizer("char", [Document("t", TEXT.upper())])
    cfg = lm.TrainConfig(d_vocab=other.vocab_size, n_layers=1, d_model=16, n_heads=1, n_ctx=16, steps=1, batch_size=2)
    lm.train(cfg, np.array(other.encode(TEXT.upper())), tokenizer=other, run_dir=tmp_path / "upper", progress=False)
    members = [scaling.TrainedMember(name, path, size, 1, None, True, "rule")
               for name, path, size in (("a", char_model / "model", 1), ("b", char_model / "model", 2),
                                        ("c", tmp_path / "upper", 3))]
    monkeypatch.setattr(scaling, "family_members", lambda root: members)
    with pytest.raises(ValueError, match="its members use different tokenizers"):
        scaling.load_family("fam")


def test_a_model_that_cannot_be_built_leaves_no_run_folder(tmp_path, monkeypatch):
    from quanta_interp import lm
    from quanta_interp.lm import training

    def broken(config):
        raise ValueError("cannot build")

    monkeypatch.setattr(training, "build_model", broken)
    cfg = lm.TrainConfig(d_vocab=8, n_layers=1, d_model=16, n_heads=1, n_ctx=4, steps=1)
    with pytest.raises(ValueError, match="cannot build"):
        lm.train(cfg, np.arange(64) % 8, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_act_fns_are_transformer_lens_activations():
    from transformer_lens.model_bridge.sources.native.model import _ACTIVATIONS

    from quanta_interp.lm.config import ACT_FNS

    assert set(ACT_FNS) == set(_ACTIVATIONS)


def test_lm_train_notes_what_it_adjusted(tmp_path, tmp_cache, capsys):
    text = tmp_path / "one.txt"
    text.write_text(TEXT)
    argv = ["lm", "train", "--corpus", str(text), "--tokenizer", "bpe-5000", "--steps", "1", "--n-ctx", "8",
            "--d-model", "16", "--n-heads", "1", "--n-layers", "1", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    vocab = json.loads((tmp_path / "run" / "config.json").read_text())["d_vocab"]
    assert vocab < 5000 and f"note: bpe-5000 asked, but the corpus yields only {vocab} tokens" in out
    assert "has 1 document, so no held-out 'val' split: val_loss is not measured" in out


def test_numeric_answers_are_finite_or_refused():
    from quanta_interp.passuntil.estimators import pass_at_k_from_rate
    from quanta_interp.passuntil.scaling import classify_emergence, fit_task_scaling

    with pytest.raises(ValueError, match="needs 0 ≤ p ≤ 1"):
        pass_at_k_from_rate(float("nan"), 3)
    with pytest.raises(ValueError, match=r"predict_at must be positive finite model sizes, got \[-5.0\]"):
        fit_task_scaling([1e6, 1e7, 1e8], [0.01, 0.1, 0.5], predict_at=[-5])
    pu = np.array([0.01, 0.02, 0.1, 0.2, 0.5, 0.4])  # 3 sizes × 2 seeds: the fewest the test accepts
    rep = classify_emergence([1e6, 1e6, 1e7, 1e7, 1e8, 1e8], pu)
    assert np.isfinite(rep.curvature_se) and np.isfinite(rep.p_value)  # was NaN, written into emergence.json


def test_gamma_fits_announce_themselves(capsys, monkeypatch):
    from quanta_interp.langstats import pipeline

    calls = []
    monkeypatch.setattr(pipeline, "fit_gamma", lambda n, h, offset, **kw: calls.append(offset) or "a γ fit")
    rep = pipeline.gamma_report(1.0 + 2.0 * np.arange(1, 9) ** -0.5, seed=0, progress=True)  # the fits take minutes
    assert calls == [True, False] and rep.gamma_offset == rep.gamma_raw == "a γ fit"
    err = capsys.readouterr().err
    assert "fitting γ with H_∞ free: 1000 bootstrap refits" in err and "fitting γ raw log-log" in err
    assert err.count("done in") == 2

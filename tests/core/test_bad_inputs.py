"""Every command group answers bad input in one line that names the flag, exits 2, writes nothing and shows
no traceback. Each row is (argv, text the error line must contain)."""

import json
import os

import pytest

from quanta_interp.cli import main

NOPE = "/no/such/place"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "a_file").write_text("not a folder\n")
    (root / "text.txt").write_text("to be or not to be, that is the question\n" * 20)
    return root


ROWS = [
    # quanta discover: every setting is checked before a model loads
    (["discover", "--n-tokens", "0"], "--n-tokens must be a positive integer"),
    (["discover", "--n-tokens", "abc"], "argument --n-tokens: expected int"),
    (["discover", "--loss-threshold", "nan"], "--loss-threshold must be a finite number"),
    (["discover", "--loss-threshold", "-1"], "--loss-threshold must be > 0.0"),
    (["discover", "--context", "1"], "--context must be a number of tokens ≥ 2 or 'doc'"),
    (["discover", "--context", "page"], "argument --context: expected a number of tokens or 'doc'"),
    (["discover", "--min-context", "64"], "--min-context must be smaller than context (64)"),
    (["discover", "--clusters", "1"], "--clusters must be between 2 and n_tokens (2000)"),
    (["discover", "--clusters", "5000"], "--clusters must be between 2 and n_tokens (2000)"),
    (["discover", "--over-cluster", "0"], "--over-cluster must be a positive integer"),
    (["discover", "--over-cluster", "100"], "--over-cluster × n_clusters (100 × 80) must be below n_tokens"),
    (["discover", "--method", "spectral"], "--method must be one of dense, knn"),
    (["discover", "--affinity", "cos"], "--affinity must be one of angular, cosine, unsigned, abs"),
    (["discover", "--assign-labels", "qr"], "--assign-labels must be one of kmeans, cluster_qr"),
    (["discover", "--cluster-counts", "1,5"], "--cluster-counts must lie between 2 and n_tokens (2000)"),
    (["discover", "--cluster-counts", "a,b"], "argument --cluster-counts: expected"),
    (["discover", "--fit-ranks", "900-100"], "--fit-ranks must be (lo, hi) with 1 ≤ lo < hi"),
    (["discover", "--fit-ranks", "10-5000"], "--fit-ranks 10-5000 go past the largest cluster count"),
    (["discover", "--fit-ranks", "x"], "argument --fit-ranks: expected LO-HI ranks"),
    (["discover", "--family", "a,b"], "--family must have at least 3 members"),
    (["discover", "--family", "a,b,a"], "--family lists a model twice"),
    (["discover", "--family-steps", "1,2,3"], "--family-steps needs family"),
    (["discover", "--family", "a,b,c", "--family-steps", "3,2,1"], "--family-steps must be 3 increasing positive steps"),
    (["discover", "--token-classes", "1,2"], "--token-classes must be 4 numbers HIGH,LOW,SLOPE,R2"),
    (["discover", "--token-classes", "0.3,1.5,-0.1,0.9"], "--token-classes high and low must be finite with low < high"),
    (["discover", "--alpha-n", "-0.5"], "--alpha-n must be ≥ 0.0"),
    (["discover", "--alpha-n", "missing.json"], "--alpha-n 'missing.json' is neither a number nor a summary.json"),
    (["discover", "--params", "("], "--params '(' is neither a preset"),
    (["discover", "--projection-dim", "-5"], "--projection-dim must be a positive integer, or 0"),
    (["discover", "--matrix-sketch-dim", "0"], "--matrix-sketch-dim must be a positive integer"),
    (["discover", "--device", "cuda"], "--device 'cuda' asked for, but CUDA is not available"),
    (["discover", "--device", "tpu"], "--device 'tpu' is not a torch device"),
    (["discover", "--batch-tokens", "0"], "--batch-tokens must be a positive integer"),
    (["discover", "--scan-tokens", "0"], "--scan-tokens must be a positive integer"),
    (["discover", "--corpus", NOPE], f"--corpus '{NOPE}' is neither 'shakespeare'"),
    (["discover", "--out", "FILE"], "--out FILE cannot be a folder"),
    (["discover", "--preset", "fast"], "argument --preset: invalid choice: 'fast'"),
    # multitask sparse parity
    (["sparse-parity", "train", "--k", "11"], "--k must be ≤ n_bits (10), got 11"),
    (["sparse-parity", "train", "--n-tasks", "0"], "--n-tasks must be a positive integer"),
    (["sparse-parity", "train", "--zipf-exponent", "0"], "--zipf-exponent (= α + 1) must be > 0"),
    (["sparse-parity", "train", "--activation", "swish"], "--activation must be one of relu, gelu, tanh, silu"),
    (["sparse-parity", "train", "--lr", "0"], "--lr must be > 0.0"),
    (["sparse-parity", "train", "--weight-decay", "-1"], "--weight-decay must be ≥ 0.0"),
    (["sparse-parity", "train", "--n-train", "0"], "--n-train must be None (fresh batches) or a positive integer"),
    (["sparse-parity", "train", "--device", "cuda"], "--device 'cuda' asked for"),
    (["sparse-parity", "sweep", "--values", "0,4"], "--values must be positive integers"),
    (["sparse-parity", "sweep", "--values", "2.5"], "argument --values: expected"),
    (["sparse-parity", "sweep", "--kind", "X"], "argument --kind: invalid choice: 'X'"),
    (["sparse-parity", "fit", NOPE], f"{NOPE} is not a sweep folder"),
    (["sparse-parity", "fit", NOPE, "--max-late-slope", "nan"], "--max-late-slope must be a finite number"),
    (["sparse-parity", "train", "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["sparse-parity", "sweep", "--seeds", "-1"], "--seeds must be a non-negative integer, got -1"),
    (["sparse-parity", "neurons", NOPE, "--threshold", "nan"], "--threshold must be a finite number"),
    (["sparse-parity", "train", "--task-seed", "-2"], "--task-seed must be a non-negative integer, got -2"),
    (["sparse-parity", "neurons", NOPE], f"{NOPE} holds no finished run"),
    (["sparse-parity", "qdg", NOPE], f"{NOPE} holds no finished run"),
    (["sparse-parity", "qdg", NOPE, "--n-samples", "0"], "--n-samples must be a positive integer"),
    # language models
    (["lm", "train", "--corpus", "TEXT", "--steps", "0"], "--steps must be a positive integer"),
    (["lm", "train", "--corpus", "TEXT", "--n-heads", "5"], "--d-model (64) must be divisible by n_heads (5)"),
    (["lm", "train", "--corpus", "TEXT", "--tokenizer", "bpe-100"], "--tokenizer must be 'char' or 'bpe-N' with 257 ≤ N"),
    # issue #30: a bound, where the tokenizers library used to abort (exit 134); checks before anything is written
    (["lm", "train", "--corpus", "TEXT", "--tokenizer", "bpe-99999999999"], "257 ≤ N ≤ 1048576"),
    (["lm", "train", "--corpus", "TEXT", "--act-fn", "bogus"], "--act-fn must be one of gelu, gelu_new, relu"),
    (["lm", "train", "--corpus", "TEXT", "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["lm", "family", "--corpus", "TEXT", "--tokenizer", "bpe-99999999999"], "--tokenizer must be 'char' or 'bpe-N'"),
    (["lm", "family", "--corpus", "TEXT", "--act-fn", "bogus"], "--act-fn must be one of"),
    (["lm", "family", "--corpus", "TEXT"], "its 'val' split holds 0 of 1 documents (0 tokens)"),
    (["lm", "train", "--corpus", "TEXT", "--n-ctx", "5000"], "n_ctx + 1 = 5001; pass a longer corpus or a smaller n_ctx"),
    (["lm", "family", "--sizes", "2y3"], "--sizes must be comma-separated LAYERSxWIDTH sizes"),
    (["lm", "family", "--lr", "-1"], "--lr must be > 0.0"),
    (["lm", "losses", "--corpus", NOPE], f"--corpus '{NOPE}' is neither 'shakespeare'"),
    (["lm", "losses", "--split", "test"], "argument --split: invalid choice: 'test'"),
    (["lm", "scaling", "--family", NOPE], f"{NOPE} is not a sweep folder"),
    (["lm", "scaling", "--family", NOPE, "--slope", "nan"], "--slope must be a finite number"),
    (["lm", "scaling", "--family", NOPE, "--low", "6"], "high and low must be finite with low < high"),
    (["lm", "load", "--device", "tpu"], "--device 'tpu' is not a torch device"),
    # lottery tickets
    (["lottery", "sweep", "--widths", "0,4"], "--widths must be positive integers"),
    (["lottery", "sweep", "--widths", "2.7"], "argument --widths: expected"),
    (["lottery", "sweep", "--activations", "swish"], "--activations holds 'swish'; each activation must be one of"),
    (["lottery", "sweep", "--interval", "1,-1"], "--interval must be (low, high) with finite low < high"),
    (["lottery", "sweep", "--adam-steps", "-5"], "--adam-steps must be an integer ≥ 0"),
    (["lottery", "sweep", "--dtype", "float16"], "--dtype must be one of float32, float64"),
    (["lottery", "sweep", "--min-seeds", "10", "--max-seeds", "5"], "--max-seeds must be ≥ min_seeds (10)"),
    (["lottery", "sweep", "--target", "cosh"], "--target must be one of x^2, x^4, abs, sin, exp"),
    (["lottery", "fit", NOPE], f"{NOPE} is not a sweep folder"),
    (["lottery", "sweep", "--n-train", "1"], "--n-train must be an integer ≥ 2, got 1"),
    (["lottery", "sweep", "--target", "exp", "--interval", "0,1000"], "--interval (0.0, 1000.0): target returned NaN or inf"),
    (["lottery", "sweep", "--n-test", "1"], "--n-test must be an integer ≥ 2, got 1"),
    (["lottery", "sweep", "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["lottery", "fit", NOPE, "--seed", "-1"], "argument --seed: must be a non-negative integer, got '-1'"),
    (["lottery", "peaks", NOPE], f"{NOPE} is not a sweep folder"),
    # language statistics
    (["langstats", "correlations", "--lags", "0,1"], "--lags must be positive integers"),
    (["langstats", "correlations", "--split", "test"], "--split must be one of train, val, all"),
    (["langstats", "correlations", "--floor-factor", "-1"], "--floor-factor must be ≥ 0.0"),
    (["langstats", "correlations", "--corpus", "BINARY"], "is not UTF-8 text (NUL bytes or undecodable bytes)"),
    (["langstats", "entropy", "--n-max", "0"], "--n-max must be a positive integer"),
    (["langstats", "measure", "--budgets", "1,2,3"], "--budgets must be ≥ 4 distinct values"),
    (["langstats", "measure", "--model-config", "{bad"], "argument --model-config: is not valid JSON"),
    (["langstats", "measure", "--model-config", '{"stepz": 1}'], "--model-config has unknown keys ['stepz']"),
    (["langstats", "measure", "--model-config", '{"n_heads": 5}'], "--model-config sets d_model, which (64) must"),
    (["langstats", "rhm", "--v", "0"], "--v must be a positive integer"),
    (["langstats", "rhm", "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["langstats", "rhm", "--samples", "15"], "--samples must be an integer ≥ 16, got 15"),
    (["langstats", "correlations", "--tokenizer", "bpe-99999999999"], "--tokenizer must be 'char' or 'bpe-N'"),
    (["langstats", "measure", "--tokenizer", "bpe-5"], "--tokenizer must be 'char' or 'bpe-N'"),
    (["langstats", "measure", "--corpus", "TEXT"], "its 'val' split holds 0 of 1 documents (0 tokens)"),
    (["langstats", "entropy", "--model", "m", "--tokenizer", "char"], "--tokenizer is not used with a model"),
    (["langstats", "entropy", "--n-ctx", "3"], "--n-ctx must be ≥ 6"),
    (["langstats", "entropy", "--corpus", "TEXT", "--split", "val"], "--split 'val' of corpus"),
    (["langstats", "correlations", "--corpus", "TEXT", "--split", "val"], "holds 0 of its 1 documents (0 tokens)"),
    # PassUntil
    (["passuntil", "run", "--task", "addition"], "--model is required"),
    (["passuntil", "run", "--model", "smollm2"], "--instances or task: give exactly one of them"),
    (["passuntil", "run", "--model", "smollm2", "--task", "addition", "--k-max", "1"], "--k-max must be ≥ r (2)"),
    (["passuntil", "run", "--model", "smollm2", "--task", "subtraction"], "--task must be 'addition'"),
    (["passuntil", "run", "--model", "smollm2", "--task", "addition", "--temperature", "0"],
     "--temperature must be > 0.0"),
    (["passuntil", "fit", "--runs", NOPE], f"--runs {NOPE} is not a finished `quanta passuntil run` folder"),
    (["passuntil", "fit", "--n", "1", "2", "--pu", "0.1", "0.2"], "at least 3"),
    (["passuntil", "pass-at-k", "--k", "3"], "needs --n and --c"),
    (["passuntil", "pass-at-k", "--k", "3", "--p", "nan"], "--p must be a finite number, got nan"),
    (["passuntil", "pass-at-k", "--k", "3", "--p", "1.5"], "--p must be ≤ 1.0"),
    (["passuntil", "pass-at-k", "--k", "0", "--p", "0.5"], "--k must be a positive integer, got 0"),
    (["passuntil", "pass-at-k", "--k", "3", "--n", "10", "--c", "11"], "--c must be passes among the --n samples"),
    (["passuntil", "pass-at-k", "--k", "3", "--n", "2", "--c", "1"], "--k must be ≤ n (2)"),
    (["passuntil", "predict", "--n", "1e6", "1e7", "1e8", "--pu", "0.01", "0.1", "0.5", "--at", "-5"],
     "--at must be > 0.0, got -5.0"),
    (["passuntil", "predict", "--n", "1e6", "1e7", "1e8", "--pu", "0.01", "0.1", "0.5", "--at", "inf"],
     "--at must be a finite number"),
    (["passuntil", "fit", "--n", "1e6", "1e7", "nan", "--pu", "0.01", "0.1", "0.5"], "--n must be a finite number"),
    (["passuntil", "fit", "--n", "1e6", "1e7", "1e8", "--pu", "0.01", "0.1", "nan"], "--pu must lie in (0, 1]"),
    (["passuntil", "emergence", "--n", "1", "2", "3", "--pu", ".1", ".2", ".3", "--significance", "2"],
     "--significance must be < 1"),
    # neurons
    (["neurons", "inspect", "--neuron", "1"], "--layer is required"),
    (["neurons", "layer", "--layer", "0", "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["neurons", "layer", "--layer", "0", "--split", "test"], "--split must be one of train, val, all"),
    (["neurons", "layer", "--layer", "0", "--context", "1"], "--context must be ≥ 2 tokens"),
    (["neurons", "layer", "--layer", "0", "--corpus", NOPE], f"--corpus '{NOPE}' is neither 'shakespeare'"),
    (["neurons", "cluster", "--discover", NOPE, "--cluster", "1"], f"--discover {NOPE} is not a `quanta discover`"),
    (["neurons", "scan", "--layers", "-1"], "--layers must list layer indices ≥ 0"),
    (["neurons", "scan", "--top-k", "0"], "--top-k must be a positive integer, got 0"),
    (["neurons", "scan", "--corpus", NOPE], f"--corpus '{NOPE}' is neither 'shakespeare'"),
    (["neurons", "link", "--layer", "10"], "--discover is required"),
    (["neurons", "link", "--discover", NOPE, "--layer", "10"], f"--discover {NOPE} is not a `quanta discover`"),
    (["neurons", "pages", "--scan", NOPE, "--neurons", "a-b"], "--neurons must look like 0-99 or 3,17,42"),
    (["neurons", "pages", "--scan", NOPE], f"--scan {NOPE} holds no scan_state.pt"),
    # benchmarks
    (["bench", "nope"], "argument name: invalid choice: 'nope'"),
]


def test_the_suite_covers_every_command_group():
    from quanta_interp.cli import GROUPS

    assert len(ROWS) >= 60 and {row[0][0] for row in ROWS} == set(GROUPS)


@pytest.mark.parametrize("argv, message", ROWS, ids=[" ".join(r[0])[:60] for r in ROWS])
def test_bad_input_is_one_line_naming_the_flag(argv, message, files, tmp_path, capsys, monkeypatch):
    from quanta_interp import lm

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(lm, "load", no_model)
    monkeypatch.setenv("QUANTA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 4)
    swap = {"FILE": str(files / "a_file"), "TEXT": str(files / "text.txt"), "BINARY": str(tmp_path / "bin.txt")}
    argv = [swap.get(a, a) for a in argv]
    message = message.replace("FILE", swap["FILE"])
    out = tmp_path / "out"
    if "--out" not in argv and argv[0] != "bench" and not (argv[0] == "sparse-parity" and argv[1] in ("neurons", "qdg")):
        argv = [*argv, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not out.exists()  # nothing half-written


def test_traceback_on_request(monkeypatch, tmp_path):
    monkeypatch.setenv("QUANTA_TRACEBACK", "1")
    with pytest.raises(ValueError, match="loss_threshold must be a finite number"):
        main(["discover", "--loss-threshold", "nan", "--out", str(tmp_path / "o")])
    assert not os.path.exists(tmp_path / "o") and json  # nothing written either way

"""Built-in task with exactly checkable answers: multi-digit addition as character strings.

A line is "a+b=c\\n"; the prompt is "\\na+b=" and the answer "c\\n" (the newline ends the answer, so
exact match rejects continuations that keep writing digits). Test pairs never occur in training.
"""

from __future__ import annotations

import numpy as np

from .sampler import Instance

__all__ = ["TASKS", "addition_split", "addition_text", "addition_tokenizer", "builtin_instances"]

TASKS = ("addition",)


def _is_test(codes: np.ndarray) -> np.ndarray:
    """A fixed tenth of all operand pairs is reserved for testing (a multiplicative hash of the pair)."""
    return (codes.astype(np.uint64) * np.uint64(2654435761) % np.uint64(2**32)) % np.uint64(10) == 0


def addition_split(n_train: int, n_test: int, *, digits: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) pairs with up to `digits` digits: training pairs (never from the reserved tenth) and
    `n_test` distinct held-out pairs; the test list for a smaller `n_test` is a prefix of a larger one.

    Training pairs are drawn with replacement (they may repeat); operands lie in [0, 10^digits).

    Returns
    -------
    train : int64 ndarray (n_train, 2)
    test : int64 ndarray (n_test, 2)

    Raises
    ------
    ValueError
        `digits` outside 1..6, `n_train` or `n_test` < 1, or `n_test` above 10^(2·digits)/20 (half the
        reserved pairs).
    """
    if digits < 1 or digits > 6 or n_test < 1 or n_train < 1:
        raise ValueError("digits must be in 1..6 and n_train, n_test ≥ 1")
    base = 10**digits
    if n_test > base * base // 20:
        raise ValueError(f"n_test={n_test} is too large for {digits}-digit operands")
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    test: list[int] = []
    while len(test) < n_test:
        chunk = rng_test.integers(0, base * base, 4096)
        test = list(dict.fromkeys([*test, *(int(c) for c in chunk[_is_test(chunk)])]))
    test_codes = np.array(test[:n_test])
    train_codes = np.empty(0, dtype=np.int64)
    while train_codes.size < n_train:
        chunk = rng_train.integers(0, base * base, 2 * n_train)
        train_codes = np.concatenate([train_codes, chunk[~_is_test(chunk)]])
    return (np.stack(divmod(train_codes[:n_train], base), axis=1),
            np.stack(divmod(test_codes, base), axis=1))


def addition_text(pairs: np.ndarray) -> str:
    """Training text: one "a+b=c" line per pair, newline-separated (starts with a newline).

    `pairs` is an int array (n, 2) of operands, e.g. the training half of `addition_split`.
    """
    return "\n" + "".join(f"{a}+{b}={a + b}\n" for a, b in pairs.tolist())


def addition_tokenizer():
    """The character tokenizer of addition problems: digits, '+', '=' and the newline."""
    from ..corpora import Document, make_tokenizer

    return make_tokenizer("char", [Document("alphabet", "0123456789+=\n")])


def builtin_instances(task: str, n: int, *, digits: int = 3, seed: int = 0) -> list[Instance]:
    """`n` held-out instances of a built-in task (the same split `addition_split(..., seed)` holds out).

    Instances are prompt "\\na+b=", answer "c\\n", id "a+b".

    Raises
    ------
    ValueError
        An unknown `task`, or `n`/`digits` that `addition_split` rejects.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    _, test = addition_split(1, n, digits=digits, seed=seed)
    return [Instance(f"\n{a}+{b}=", f"{a + b}\n", id=f"{a}+{b}") for a, b in test.tolist()]

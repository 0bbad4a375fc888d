"""Module-level run functions for the executor tests (Ray and process pools must import them)."""

import os
import time
from pathlib import Path

import torch


def tiny_regression(config, run_dir):
    """A seeded few-step training whose final loss must be identical on every backend."""
    g = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.randn(4, 1, generator=g)
    w = torch.zeros(4, 1, requires_grad=True)
    opt = torch.optim.Adam([w], lr=config["lr"])
    for _ in range(20):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
    return {"loss": float(loss.detach()), "w": w.detach().flatten().tolist()}


def sleepy(config, run_dir):
    """Writes its pid, then sleeps; the test kills the worker of run 0 on its first attempt."""
    marks = Path(config["marks"])
    attempt = len(list(marks.glob(f"run{config['i']}-*")))
    (marks / f"run{config['i']}-{attempt}.pid").write_text(str(os.getpid()))
    time.sleep(config["sleep"] if config["i"] == 0 and attempt == 0 else 0.1)
    return {"i": config["i"], "attempt": attempt}

"""Lottery tickets (Liu & Tegmark 2023): y = x² with 1 → N → 1 MLPs, many seeds per width in one
vectorised model, scaling fits, loss peaks, and `dissect`, which measures a network's symmetric-pair tickets."""

from .analysis import fit_scaling, loss_peaks, scaling_table
from .dissect import TicketReport, dissect, ensemble_variance, even_taylor, find_pairs, neuron_curves
from .experiment import ACTIVATIONS, MLP1D, SeedEnsemble, batched_lbfgs, make_grid
from .runs import load_run, run_sweep, sweep_configs

__all__ = [
    "ACTIVATIONS", "MLP1D", "SeedEnsemble", "TicketReport", "batched_lbfgs", "dissect", "ensemble_variance",
    "even_taylor", "find_pairs", "fit_scaling", "load_run", "loss_peaks", "make_grid", "neuron_curves",
    "run_sweep", "scaling_table", "sweep_configs",
]

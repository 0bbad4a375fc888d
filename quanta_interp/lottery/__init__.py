"""Lottery tickets (Liu & Tegmark 2023): y = x² with 1 → N → 1 MLPs, many seeds per width in one
vectorised model, scaling fits, loss peaks, and `dissect`, which measures a network's symmetric-pair tickets."""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "analysis": ["PerActivation", "ScalingFit", "ScalingRow", "fit_scaling", "loss_peaks", "scaling_table"],
    "config": ["SweepConfig"],
    "tickets": ["NeuronCurves", "TicketReport", "dissect", "ensemble_variance", "even_taylor", "find_pairs", "neuron_curves"],
    "experiment": ["ACTIVATIONS", "MLP1D", "SeedEnsemble", "batched_lbfgs", "make_grid"],
    "results": ["PeakReport", "PeakSolution", "RunResult"],
    "runs": ["load_run", "peak_report", "run_sweep", "sweep_configs"],
})

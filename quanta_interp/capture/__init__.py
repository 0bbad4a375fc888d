"""Activations and per-token gradients of language models (and any `nn.Linear` network), streamed to disk.

- `modules`: which weight matrices (`select_modules`: presets, 'layers A-B', regex);
- `hooks`: per-example gradients Σ_s g_s a_sᵀ from one backward (`GradientCapture`);
- `sketch`: where they go when projected — a seeded `TensorSketch` of the whole gradient in k numbers;
- `windows`: LM targets as context windows, B per backward (`per_token_gradients`), and the floor;
- `store`: resumable, extendable on-disk gradients (`capture_gradients`, `GradientStore`);
- `sharding`: the same capture split over `executors.map_runs` (local processes, Ray);
- `activations`: activations at the predicting position (`capture_activations`).
"""

from .activations import capture_activations
from .hooks import GradientCapture, activation_grads_only, grads_only_for
from .modules import PRESETS, compile_params, linear_modules, select_modules
from .sharding import capture_gradients_sharded
from .sketch import DEFAULT_MATRIX_DIM, DEFAULT_PROJECTION_DIM, TensorSketch
from .store import GradientStore, capture_gradients, length_batches
from .windows import forward_backward_floor, per_sample_gradients, per_token_gradients, window_batch

__all__ = ["DEFAULT_PROJECTION_DIM", "DEFAULT_MATRIX_DIM", "PRESETS", "linear_modules", "select_modules",
           "compile_params", "GradientCapture", "TensorSketch", "window_batch", "per_token_gradients",
           "forward_backward_floor", "per_sample_gradients", "capture_gradients", "capture_gradients_sharded",
           "GradientStore", "length_batches", "capture_activations", "grads_only_for", "activation_grads_only"]

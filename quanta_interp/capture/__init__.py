"""Activations and per-token gradients of language models (and any `nn.Linear` network), streamed to disk.

- `modules`: which weight matrices (`select_modules`: presets, "layers A-B", regex);
- `hooks`: per-example gradients Σ_s g_s a_sᵀ from one backward (`GradientCapture`);
- `sketch`: where they go when projected — a seeded `TensorSketch` of the whole gradient in k numbers;
- `windows`: LM targets as context windows, B per backward (`per_token_gradients`), and the floor;
- `store`: resumable, extendable, checksummed on-disk gradients (`capture_gradients`, `GradientStore`, `open_store`);
- `sharding`: the same capture split over `executors.map_runs` (local processes, Ray);
- `activations`: activations at the predicting position (`capture_activations`).
"""

from .._exports import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "activations": ["capture_activations"],
    "hooks": ["GradientCapture", "activation_grads_only", "grads_only_for"],
    "modules": ["PRESETS", "compile_params", "linear_modules", "select_modules"],
    "sharding": ["capture_gradients_sharded"],
    "dims": ["DEFAULT_MATRIX_DIM", "DEFAULT_PROJECTION_DIM", "validate_dims"],
    "sketch": ["TensorSketch"],
    "store": ["DamagedRowsError", "GradientStore", "capture_gradients", "mark_pending", "open_store",
              "row_checksums"],
    "windows": ["forward_backward_floor", "length_batches", "per_sample_gradients", "per_token_gradients", "window_batch",
                "window_losses"],
})

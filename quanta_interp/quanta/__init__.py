"""The Quantization Model of Neural Scaling (Michaud et al., NeurIPS 2023): multitask sparse parity,
quanta discovery from gradients (QDG), rank-frequency of quanta."""

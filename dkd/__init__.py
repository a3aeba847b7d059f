"""Dynamic Knowledge Distillation (Li et al., EMNLP 2021) with Hydra and PyTorch Lightning."""

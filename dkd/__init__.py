"""DKD: Dynamic Knowledge Distillation for pre-trained language models (Li et al., EMNLP 2021)."""
__version__ = "0.2.0"

"""DKD: Dynamic Knowledge Distillation for pre-trained language models (Li et al., EMNLP 2021)."""
from dkd.resolvers import register as _register_resolvers

__version__ = "0.2.0"
_register_resolvers()  # ${launcher:...} in conf/trainer

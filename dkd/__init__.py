"""DKD: Dynamic Knowledge Distillation for pre-trained language models (Li et al., EMNLP 2021)."""
from dkd import moved as _moved
from dkd.jobs.resolvers import register as _register_resolvers

__version__ = "0.3.0"
_register_resolvers()  # ${launcher:...} in conf/trainer
_moved.install()  # the modules' names before 0.3, for one release

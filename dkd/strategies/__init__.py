"""The paper's strategies, each a small class chosen by a config group: data selection (``samplers``, ``sampler=``),
teacher adoption (``adoption``, ``adoption=``), objective adaptation (``objectives``, ``objective=``, and
``weighting``, ``weighting=``), all steered by one measure of the student's uncertainty (``uncertainty``).

They import nothing of DKD but that measure and :mod:`dkd.errors`: the system (:mod:`dkd.module`) wires them."""

"""Shipping a distilled student: the compression report with its ONNX and int8 exports (``python -m
dkd.ship.compress``), the model card (``python -m dkd.ship.card``), and each example's prediction on dev and test
(``python -m dkd.ship.evaluate``), all reading a finished run through ``finished``.

They import the system below them (data, models, metrics, tasks); only :mod:`dkd.run` imports them, at a run's end."""

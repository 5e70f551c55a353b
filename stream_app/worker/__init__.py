"""The worker's hot path as plain functions (decode, dedupe, step, rank, emit), its user-state codec,
item index and hot-swap; the Faust wiring that drives it lives in ``app``/``tables``/``agents`` beside them."""

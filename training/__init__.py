"""Training and benchmark scripts (run from the repository root, e.g.
``python -m training.benchmark`` or ``python training/benchmark.py``)."""

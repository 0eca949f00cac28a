"""Benchmarks (not tests): the per-event CPU cost of the pipeline, as ratios to a Home Assistant state write.

Run them with ``scripts/bench``. ``rows`` is the registry each source kind adds its rows to,
``harness`` the shared Home Assistant and timing helpers, ``floor`` the reference row.
"""

"""Benchmarks: every module in this folder not starting with an underscore is a script
that runs with no arguments and prints its figures.

Run them all with ``python -m benchmarks`` (or ``make bench``), some by name with
``python -m benchmarks cluster sim_scale``, one with its options with e.g.
``python -m benchmarks.cluster_bench --agents 10``.
"""

"""Benchmarks: every ``benchmarks/*_bench.py`` module with a ``main(argv)`` function.

Run them all with ``python -m benchmarks`` (or ``make bench``), one with
``python -m benchmarks cluster`` or ``python -m benchmarks.cluster_bench --help``.
"""

"""Benchmarks: per-update speed (``offrl bench speed``)."""

from offrl.bench.speed import SpeedResult, matmul_gflops, measure_speed

__all__ = ["SpeedResult", "matmul_gflops", "measure_speed"]

"""Benchmarks: per-update speed (``offrl bench speed``) and sampling (``offrl bench sample``)."""

from offrl.bench.speed import SpeedResult, matmul_gflops, measure_sampling, measure_speed

__all__ = ["SpeedResult", "matmul_gflops", "measure_sampling", "measure_speed"]

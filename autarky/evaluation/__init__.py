"""Evaluations the product itself runs (self-modification decides promotions with them); the benchmarks
under bench/ use the same code."""

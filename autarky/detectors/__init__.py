"""Pure, deterministic detectors that workflow code can call (no I/O, no clock reads)."""

"""Small reference models for the demo, the tests and the benchmarks."""

"""Performance benchmarks (`make bench`): they print figures and ratios, never assert timings."""

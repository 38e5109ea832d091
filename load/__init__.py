"""Traffic for the waiting room: benchmarks (`bench/`) and, later, load replays."""

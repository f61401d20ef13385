"""Unit tests of the pure core: detector, planner, placement fold, config."""

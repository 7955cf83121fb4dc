"""Device-selection benchmark: random, oort and capability on a simulated heterogeneous fleet."""

// Filled in by the future work.

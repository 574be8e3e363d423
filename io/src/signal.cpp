// Filled in by the signal work.

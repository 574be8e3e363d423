// Filled in by the executor work.

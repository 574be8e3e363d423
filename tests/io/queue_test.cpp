// Filled in by the queue work.

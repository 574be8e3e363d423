// Filled in by the combinators work.

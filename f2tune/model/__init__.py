"""Loading Florence-2 and choosing which of its weights train."""

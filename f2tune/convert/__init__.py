"""Converting checkpoints of the original remote-code Florence-2 into the native transformers layout."""

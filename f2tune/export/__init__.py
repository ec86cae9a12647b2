"""Exports at the end of fit: a peft adapter folder or a full model folder, written atomically."""

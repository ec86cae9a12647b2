"""Exports: a peft adapter or a model folder with its model card, written atomically."""

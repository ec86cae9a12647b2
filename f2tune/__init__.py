"""f2tune: fine-tune Florence-2 from one YAML recipe."""

__version__ = "0.1.0"

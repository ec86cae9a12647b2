"""Training-step benchmark: f2tune's Lightning step against a plain transformers + peft loop written
the way existing Florence-2 fine-tuning scripts are, on the same batches, in one run
(`f2tune bench`, `python benchmarks/train_step.py`)."""

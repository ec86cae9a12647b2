"""Evaluation from generated text."""

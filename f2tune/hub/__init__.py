"""Sharing exports on the Hugging Face Hub."""

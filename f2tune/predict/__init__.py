"""`f2tune predict`: run a model on images, write JSONL results and pictures of them."""

"""Data: readers of dataset formats -> `Sample` -> dataset -> collator -> Lightning datamodule."""

"""Training: the LightningModule, optimizer, callbacks, Trainer construction and the fit command."""

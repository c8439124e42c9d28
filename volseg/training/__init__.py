"""Training: the Trainer (named steps), its schedule and time budget, and the losses."""

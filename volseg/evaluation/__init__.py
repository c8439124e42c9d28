"""Scoring label maps against references: the metrics (Dice, HD95, surface distance) and ``volseg evaluate``."""

"""Data layer: manifest, geometry-true I/O, checks, preprocessing plans and sampling."""

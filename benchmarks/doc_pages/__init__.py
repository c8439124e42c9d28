"""One renderer module per user page (``benchmarks/render_docs.py`` runs them); ``sources``: what they
read the committed results with, and the formatting they share."""

"""Training-side code: datasets, the interest model and its training loop.

Kept import-light (no torch at package import) so data tools and the CLI stay fast.
"""

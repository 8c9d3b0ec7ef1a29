"""Data layer: readers of the real datasets, the synthetic generator, the cohort store, splits."""

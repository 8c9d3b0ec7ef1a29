"""Training shared by every model: seeding, metrics, batches, losses, the epoch loop with checkpoint/resume, precision."""

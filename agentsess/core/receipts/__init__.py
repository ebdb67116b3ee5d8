"""Receipts as the domain sees them: recording and sealing a run's stream, verifying it, exporting it."""

"""Runs: planning, starting and supervising, abandonment, revocation, history, pruning."""

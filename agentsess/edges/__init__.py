"""Edges: each module owns one resource (paths, store, receipts, supervisor, keys, config)."""

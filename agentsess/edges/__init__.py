"""Edges: each module owns one resource (paths, store, receipt streams, supervisor, keys, config)."""

"""Tests written against surviving mutants of verification, tokens and scopes."""

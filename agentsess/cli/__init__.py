"""The command line: a thin layer that parses, calls one core function, and renders."""

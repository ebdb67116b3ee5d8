"""Core: run lifecycle, credentials, scopes, policy. Never imports typer or rich."""

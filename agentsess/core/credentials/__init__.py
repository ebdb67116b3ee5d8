"""Credentials: agentsess tokens, the scope algebra, verifying a token on this machine."""

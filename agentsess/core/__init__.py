"""Core, grouped by domain: runs, credentials, receipts, guard; profiles and durations beside them. Never imports typer or rich."""

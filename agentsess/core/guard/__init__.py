"""The guard: where a tool call meets the run's policy, agent integrations, output masking."""

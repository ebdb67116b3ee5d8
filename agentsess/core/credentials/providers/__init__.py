"""Provider credentials: the provider's own short-lived credential, minted per run.

A profile's ``[profiles.P.providers.NAME]`` tables say which providers mint for its runs;
the run's scopes say what each credential may do (``github:contents:write``). Each provider
module is pure (schema, scope mapping, what a receipt says); the HTTP calls live in edges
(:mod:`agentsess.edges.github`); :mod:`agentsess.core.credentials.providers.runtime` holds a
run's minted credentials in the supervisor, serves them through the broker and revokes them.
"""

from agentsess.core.credentials.services import SpecError

PROVIDERS = ("github", "aws", "command")


def check_providers(value) -> dict:
    """Validate ``providers``: a table of provider tables. Raises SpecError (where: ``.github.app_id``)."""
    if not isinstance(value, dict):
        raise SpecError("", "expected a table of providers like [profiles.P.providers.github]")
    out = {}
    for name, table in value.items():
        if name not in PROVIDERS:
            raise SpecError(f".{name}", f"unknown provider (providers: {', '.join(PROVIDERS)})")
        if not isinstance(table, dict):
            raise SpecError(f".{name}", "expected a table")
        from agentsess.core.credentials.providers import aws, command, github

        try:
            out[name] = {"github": github, "aws": aws, "command": command}[name].check_table(table)
        except SpecError as e:
            raise SpecError(f".{name}{e.where}", e.message) from None
    return out

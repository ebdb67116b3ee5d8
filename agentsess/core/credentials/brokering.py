"""A run's broker, wired to the run: its secrets, its receipts and its liveness.

``open_broker`` is what ``core.runs.start`` calls once the child's environment is built: it
resolves the profile's services (presets applied, fresh placeholders), reads their secrets
from the keychain, and starts the :class:`~agentsess.edges.broker.Broker` with a recorder
and a liveness check that each use their own store connection (the broker's threads never
share the supervisor's).
"""

import threading
import time
from dataclasses import dataclass

from agentsess.core.credentials import services
from agentsess.errors import RUN_FAILED, AgentsessError


@dataclass(frozen=True, slots=True)
class RunBroker:
    broker: object  # agentsess.edges.broker.Broker
    env: dict  # variables to add to the child's environment
    facts: dict  # what the run.started receipt says about it (names only, never values)
    masked: dict  # {label: secret value} for the output masker, as a net under the boundary

    def stop(self) -> None:
        self.broker.stop()  # type: ignore[attr-defined]


class _PerThreadStore:
    """A store connection per thread, opened on first use."""

    def __init__(self):
        self._local = threading.local()

    def get(self):
        store = getattr(self._local, "store", None)
        if store is None:
            from agentsess.edges.store import Store

            store = self._local.store = Store()
        return store


def _liveness(stores: _PerThreadStore, run_id: str, expires_at: float):
    seen = threading.Event()

    def check() -> str | None:
        row = stores.get().get_run(run_id)
        if row is None:
            # the broker starts just before the run's row is written; once seen, a row that
            # disappears means the run is gone
            return "finished" if seen.is_set() else None
        seen.set()
        if row.get("revoked_at") is not None:
            return "revoked"
        if row.get("status") != "running":
            return "finished"
        if time.time() >= expires_at:
            return "expired"
        return None

    return check


def open_broker(
    run_id: str, profile, expires_at: float, child_env: dict, bundle_dir: str | None = None
) -> RunBroker | None:
    """Start the run's broker if its profile declares services or proxy mode; else None.

    ``bundle_dir``: a folder the child can read, for proxy mode's CA bundle (default: a
    fresh folder under the temporary directory).
    """
    declared = profile.services or {}
    network = services.resolve_network(profile.network or {})
    if not declared and not network.proxy:
        return None
    specs = services.resolve_services(declared)
    values = {}
    if specs:
        from agentsess.edges import keychain

        for spec in specs:
            value = keychain.get_secret(spec.secret)
            if value is None:
                raise AgentsessError(
                    f"profile '{profile.name}': service {spec.name} needs secret '{spec.secret}', which "
                    f"is not set; set it with `agentsess secret set {spec.secret}`",
                    RUN_FAILED,
                )
            values[spec.name] = value
    from agentsess.core.receipts import recording
    from agentsess.edges.broker import Broker

    stores = _PerThreadStore()

    def record(rtype: str, data: dict) -> None:
        recording.record(stores.get(), run_id, rtype, data)

    broker = Broker(
        run_id, specs, values, network,
        record=record, liveness=_liveness(stores, run_id, expires_at), expires_at=expires_at,
    )
    env = broker.start(child_env, bundle_dir)
    facts = {
        "url": f"http://127.0.0.1:{broker.port}",
        "services": [
            {
                "name": s.name, "secret": s.secret, "upstream": f"{s.upstream.scheme}://{s.upstream.authority}",
                "env": sorted(([s.env_base_url] if s.env_base_url else []) + list(s.env_key)),
                "mode": "placeholder",
            }
            for s in specs
        ],
        "proxy": network.proxy,
        "allow_hosts": list(network.allow_hosts),
        "intercepted": sorted({s.upstream.host for s in specs if s.upstream.scheme == "https"}
                              | {h for s in specs for h in s.hosts}) if broker.authority else [],
    }
    masked = {f"service:{name}": value for name, value in values.items()}
    return RunBroker(broker, env, facts, masked)

"""The run's credential broker: a loopback HTTP endpoint owned by the supervisor.

:class:`Broker` swaps each service's placeholder for its real secret on requests towards that
service's upstream only, refuses placeholders sent anywhere else, records every request as a
``net.request`` receipt, and refuses at once when the run is revoked, expired or finished. In
proxy mode it is also the run's HTTP(S) proxy with an egress allowlist. See ``listener`` for
the request paths, ``upstream`` for the client side and ``authority`` for the run's CA.
"""

from agentsess.edges.broker.listener import Broker

__all__ = ["Broker"]

"""The local control socket: a versioned JSON protocol, its server, a client and the CLI side.

The running door answers through :class:`daemon.control.api.DoorAdmin`; the server
(:mod:`daemon.control.server`) authorises each connection from the peer's credentials and calls it
from its own threads, never from the capture loop's.
"""

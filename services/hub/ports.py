"""Whether the HTTP port is free, asked before anything is started."""

from __future__ import annotations

import errno
import socket

from services.common.errors import SafetyhubError
from services.common.settings import HttpConfig


class PortUnavailable(SafetyhubError):
    """The HTTP port cannot be listened on; start-up stops before any server is started."""


def check_http_port(http: HttpConfig) -> None:
    """Raise PortUnavailable unless `http.host`:`http.port` can be listened on right now.

    Checked before the embedded servers start: finding out at the HTTP bind, after NATS and
    PostgreSQL came up, costs the user a start-up and ends in a traceback. Port 0 is always free.
    """
    if http.port == 0:
        return
    hint = "choose another with --http-port PORT (or http.port in the config)"
    try:
        addresses = socket.getaddrinfo(http.host, http.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise PortUnavailable(
            f"cannot listen on {http.host!r}: {err.strerror} (http.host in the config)"
        ) from err
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            # As the server will: a port left in TIME_WAIT by an earlier hub is free to listen on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    raise PortUnavailable(f"port {http.port} on {http.host} is in use; {hint}") from err
                raise PortUnavailable(
                    f"cannot listen on port {http.port} on {http.host}: {err.strerror}; {hint}"
                ) from err

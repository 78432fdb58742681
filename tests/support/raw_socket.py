"""A raw socket to a local HTTP server: what it sends until it closes, and the status it gave."""

import socket
import time

__all__ = ["GRACE_S", "status_of", "until_closed"]

# How long past a deadline the close may come on a loaded machine, and how long a test waits.
GRACE_S = 3.0


def until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and after how many seconds
    (``limit_s`` and what came, if it never closes)."""
    started = time.monotonic()
    received = b""
    sock.settimeout(0.1)
    while time.monotonic() - started < limit_s:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def status_of(received: bytes) -> int:
    return int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0

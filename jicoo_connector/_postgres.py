"""How the library connects to PostgreSQL, for every store that does (the write-back ledger, the
webhook event store): the URL schemes it takes, the connect timeout, the server-side keepalive.
"""

from typing import Final

__all__ = ["CONNECT_TIMEOUT_S", "POSTGRES_SCHEMES", "SERVER_KEEPALIVE"]

POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S: Final = 10
# A worker that vanishes without closing its socket (power loss, partition) holds its advisory
# lock until the server gives up on the connection: about idle + interval * count seconds.
SERVER_KEEPALIVE: Final = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10,
                           "tcp_keepalives_count": 3}  # fmt: skip

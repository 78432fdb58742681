"""A throwaway S3-compatible server on loopback (moto in server mode) with one bucket."""

from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs
from moto.server import ThreadedMotoServer

__all__ = ["moto_s3"]


@contextmanager
def moto_s3(bucket: str) -> Iterator[tuple[str, pafs.S3FileSystem]]:
    """Yield the server's ``host:port`` and a filesystem on it where ``bucket`` exists."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        fs = pafs.S3FileSystem(
            endpoint_override=f"{host}:{port}",
            scheme="http",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        fs.create_dir(bucket)
        yield f"{host}:{port}", fs
    finally:
        server.stop()

"""A plain HTTP server on loopback that records every request's path and headers: the oracle
for what a client sent (headers that must not leak, paths that must be quoted)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["CaptureServer"]

CAPTURE_STATUS = 200
POLL_S = 0.02  # how fast the capture server notices shutdown()
CAPTURE_BODY = b'{"data": null, "errors": {}}'


class CaptureServer:
    """A plain HTTP server that records the headers of every request (the redirect-leak oracle)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.paths: list[str] = []
        captured = self

        class Handler(BaseHTTPRequestHandler):
            def _capture(self) -> None:
                captured.requests.append({k.lower(): v for k, v in self.headers.items()})
                captured.paths.append(self.path)
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(CAPTURE_STATUS)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(CAPTURE_BODY)))
                self.end_headers()
                self.wfile.write(CAPTURE_BODY)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _capture  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads ``requests`` instead."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(POLL_S,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

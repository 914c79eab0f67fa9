"""pipeline.standins.base: a threaded loopback HTTP server that records calls and injects faults.

Each stand-in (FIRMS, Areas/Geostore, GFW Data API) subclasses `StandinServer` and implements
`handle(request)`. Tests read `server.calls` to assert what the real clients sent, and use
`server.fail_next(...)` to reproduce throttling (429 + Retry-After), 5xx and error bodies.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encoded(self) -> tuple[bytes, str]:
        body = self.body
        ctype = self.content_type
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            ctype = ctype or "application/json"
        elif isinstance(body, str):
            body = body.encode()
            ctype = ctype or "text/plain;charset=UTF-8"
        return body, ctype or "application/octet-stream"


@dataclass
class Fault:
    pattern: re.Pattern
    response: Response
    times: int
    method: str | None = None
    delay: float = 0.0


def json_response(
    status: int, payload, headers: dict[str, str] | None = None, content_type: str | None = None
) -> Response:
    return Response(status=status, body=payload, headers=headers or {}, content_type=content_type)


class StandinServer:
    """Base class: `with MyStandin() as srv: srv.url ...`; subclasses implement `handle`."""

    name = "standin"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.calls: list[Request] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> StandinServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
            # adds ~40 ms per response (400 pages of areas: 20 s instead of 2 s).
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output quiet
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                )
                resp = server._dispatch(req)
                payload, ctype = resp.encoded()
                self.send_response(resp.status)
                self.send_header("Content-Type", ctype)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval makes shutdown() return quickly (the default 0.5 s slows every test).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- faults and call log -----------------------------------------------------------------
    def fail_next(
        self,
        path_regex: str,
        status: int,
        body: bytes | str | dict = b"",
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        method: str | None = None,
        content_type: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests whose path matches `path_regex` with this response.

        `delay` sleeps before answering (to provoke client timeouts).
        """
        with self._lock:
            self._faults.append(
                Fault(re.compile(path_regex), Response(status, body, headers or {}, content_type), times, method, delay)
            )

    def calls_to(self, path_regex: str, method: str | None = None) -> list[Request]:
        rx = re.compile(path_regex)
        return [c for c in self.calls if rx.search(c.path) and (method is None or c.method == method)]

    def _dispatch(self, req: Request) -> Response:
        with self._lock:
            self.calls.append(req)
            fault = None
            for f in self._faults:
                if f.times > 0 and f.pattern.search(req.path) and (f.method is None or f.method == req.method):
                    f.times -= 1
                    fault = f
                    break
        if fault is not None:
            if fault.delay:
                import time

                time.sleep(fault.delay)
            return fault.response
        try:
            return self.handle(req)
        except Exception as exc:  # a bug in the stand-in must show up as a 500, not a hang
            return Response(500, {"status": "error", "message": f"stand-in error: {exc!r}"})

    def handle(self, req: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

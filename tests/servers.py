"""Small real HTTP servers on 127.0.0.1 for the tests: scripted file server,
Numerai's GraphQL endpoint (as numerapi calls it), and moto's S3."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedServer:
    """Serves each path by a script of responses, consumed in order (the last repeats).

    A response is ``(status, body)``, ``(status, body, headers)`` or
    ``("truncate", body)``: a Content-Length promising more than is sent.
    Every request is recorded as ``(method, path, headers, body)``.
    """

    def __init__(self):
        self.scripts: dict[str, list] = {}
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.graphql: dict[str, str] | None = None  # filename -> path served here
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.handle(self, self.rfile.read(length))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, *responses) -> str:
        self.scripts[path] = list(responses)
        return self.url + path

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append((request.command, request.path, dict(request.headers), body))
        if path == "/graphql" and self.graphql is not None:
            filename = json.loads(body)["variables"]["filename"]
            known = filename in self.graphql
            answer = ({"data": {"dataset": self.url + self.graphql[filename]}} if known
                      else {"errors": [{"message": f"dataset {filename} not found"}]})
            return respond(request, 200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
        script = self.scripts.get(path)
        if not script:
            return respond(request, 404, b"not found")
        response = script.pop(0) if len(script) > 1 else script[0]
        if response[0] == "truncate":
            body = response[1]
            request.send_response(200)
            request.send_header("Content-Length", str(len(body) * 2))
            request.end_headers()
            request.wfile.write(body)
            request.wfile.flush()
            request.close_connection = True
            return None
        status, payload, *headers = response
        return respond(request, status, payload, headers[0] if headers else {})

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, *_ in self.requests if m == method and p.split("?")[0] == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def respond(request: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict) -> None:
    request.send_response(status)
    for key, value in {"Content-Length": str(len(body)), **headers}.items():
        request.send_header(key, value)
    request.end_headers()
    request.wfile.write(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_error_xml(code: str, message: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>1</RequestId></Error>").encode()

"""Small real HTTP servers on 127.0.0.1 for the tests: scripted file server,
Numerai's GraphQL endpoint (as numerapi calls it), and moto's S3."""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedServer:
    """Serves each path by a script of responses, consumed in order (the last repeats).

    A response is one of:

    - ``(status, body)`` or ``(status, body, headers)``;
    - ``("truncate", body)``: a Content-Length promising twice the body sent;
    - ``("reset", body)``: half the body, then a TCP reset;
    - ``("stall", body)``: half the body, then silence until the server closes
      (at most ``STALL_SECONDS``);
    - ``("trickle", body, interval)``: one byte every ``interval`` seconds;
    - ``("hang",)``: the request read, then no answer at all (not even headers)
      until the server closes (at most ``STALL_SECONDS``);
    - ``("graphql",)``: the answer of Numerai's API (see ``graphql``);
    - ``("forward", then)``: the request forwarded to ``upstream`` (moto's S3),
      whose answer is then relayed (``"ok"``) or lost: ``"reset"``, ``"stall"``,
      ``"truncate"`` (the object is stored, the client never learns it).

    Every request is recorded as ``(method, path, headers, body)``, and its
    arrival time (``time.monotonic()``) in ``times``.
    """

    STALL_SECONDS = 30.0

    def __init__(self, tls: tuple[str, str] | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.scripts: dict[str, list] = {}
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.times: list[float] = []
        self.graphql: dict[str, str] | None = None  # filename -> path (or full URL) served
        self.upstream: str | None = None  # where "forward" sends requests
        self.closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.handle(self, self.rfile.read(length))

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # resets and broken pipes are the point of this server

        self.httpd = Quiet((host, 0), Handler)
        self.scheme = "https" if tls else "http"
        if tls:  # (certificate file, key file): the handshake happens in the handler's thread
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True,
                                                    do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.httpd.server_address[1]}"

    def route(self, path: str, *responses) -> str:
        self.scripts[path] = list(responses)
        return self.url + path

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append((request.command, request.path, dict(request.headers), body))
        self.times.append(time.monotonic())
        script = self.scripts.get(path)
        if not script and path == "/graphql" and self.graphql is not None:
            script = [("graphql",)]
        if not script:
            return respond(request, 404, b"not found")
        response = script.pop(0) if len(script) > 1 else script[0]
        kind = response[0]
        if kind == "graphql":
            return respond(request, 200, self.graphql_answer(body), {"Content-Type": "application/json"})
        if kind == "forward":
            return self.forward(request, body, response[1])
        if kind == "hang":
            request.close_connection = True
            self.closed.wait(self.STALL_SECONDS)
            return None
        if isinstance(kind, str):
            return self.fault(request, kind, *response[1:])
        status, payload, *headers = response
        return respond(request, status, payload, headers[0] if headers else {})

    def graphql_answer(self, body: bytes) -> bytes:
        filename = json.loads(body)["variables"]["filename"]
        target = (self.graphql or {}).get(filename)
        if target is None:
            return json.dumps({"errors": [{"message": f"dataset {filename} not found"}]}).encode()
        return json.dumps({"data": {"dataset": target if "://" in target else self.url + target}}).encode()

    def fault(self, request: BaseHTTPRequestHandler, kind: str, body: bytes, interval: float = 0.2,
              status: int = 200) -> None:
        """Start a response of ``body`` and break it as ``kind`` says."""
        request.close_connection = True
        request.send_response(status)
        request.send_header("Content-Length", str(len(body) * (2 if kind == "truncate" else 1)))
        request.send_header("Connection", "close")
        request.end_headers()
        if kind == "trickle":
            for byte in body:
                if self.closed.wait(interval):
                    return
                request.wfile.write(bytes([byte]))
            return
        request.wfile.write(body if kind == "truncate" else body[:len(body) // 2])
        request.wfile.flush()
        if kind == "reset":
            reset(request)
        elif kind == "stall":
            self.closed.wait(self.STALL_SECONDS)

    def forward(self, request: BaseHTTPRequestHandler, body: bytes, then: str) -> None:
        """Send the request on to ``upstream``; relay its answer, or lose it as ``then`` says."""
        upstream = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(request.command, request.path, body, headers)
        answer = connection.getresponse()
        payload = answer.read()
        connection.close()
        if then == "ok":
            relayed = {k: v for k, v in answer.getheaders()
                       if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")}
            return respond(request, answer.status, payload, relayed)
        request.close_connection = True
        if then == "reset":
            return reset(request)
        if then == "stall":
            self.closed.wait(self.STALL_SECONDS)
            return None
        return self.fault(request, then, payload or b"<stored/>")

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, *_ in self.requests if m == method and p.split("?")[0] == path)

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def reset(request: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    request.close_connection = True
    request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.connection.close()


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


def self_signed_certificate(folder: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (its own issuer: no CA vouches for it) and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert, key_file


def s3_error_xml(code: str, message: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>1</RequestId></Error>").encode()


def start_moto():
    """moto's S3 server on 127.0.0.1; returns (server, boto3 client, its URL)."""
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    return server, boto3.client("s3", region_name="us-east-1", endpoint_url=url), url


def presigner(endpoint: str, access_key: str = "AKIATESTINGKEY00", secret: str = "testing-secret"):
    """A boto3 S3 client that signs URLs for ``endpoint`` (signing is local: no request is made)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret, config=Config(signature_version="s3v4"))

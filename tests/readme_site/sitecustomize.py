"""Test-only: points numerapi at a fake Numerai API in a process started by a pasted README command.

tests/test_readme_commands.py puts this folder on PYTHONPATH (or into a throwaway image)
with ``NUMERAI_PREDICT_TEST_API`` set to:

- a URL: numerapi's ``API_TOURNAMENT_URL`` becomes it (the test's GraphQL server on 127.0.0.1);
- ``serve:FOLDER``: a GraphQL endpoint and file server on this process's 127.0.0.1 answers
  instead, serving FOLDER's live.parquet and live_benchmark_models.parquet (inside a container
  that reaches nothing else).

Nothing happens until ``numerapi.base_api`` is imported (only the runner fetches data), and
nothing at all without the variable. Standard library only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = "numerapi.base_api"
DATASETS = {"v5.3/live.parquet": "live.parquet",
            "v5.3/live_benchmark_models.parquet": "live_benchmark_models.parquet"}


def serve(folder: str) -> str:
    """A GraphQL endpoint handing out URLs of FOLDER's files, and those files; returns its URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            name = DATASETS.get(request["variables"]["filename"])
            url = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
            data = {"data": {"dataset": url}} if name else {"errors": [{"message": "unknown dataset"}]}
            self.answer(200, json.dumps(data).encode(), "application/json")

        def do_GET(self):
            name = self.path.lstrip("/")
            if name not in DATASETS.values():
                return self.answer(404, b"not found", "text/plain")
            with open(os.path.join(folder, name), "rb") as handle:
                return self.answer(200, handle.read(), "application/octet-stream")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/graphql"


class PointNumerapi(importlib.abc.MetaPathFinder):
    """Sets ``API_TOURNAMENT_URL`` right after numerapi.base_api is executed."""

    def __init__(self, setting: str):
        self.setting = setting

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        setting, execute = self.setting, spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module.API_TOURNAMENT_URL = serve(setting[len("serve:"):]) if setting.startswith("serve:") \
                else setting

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("NUMERAI_PREDICT_TEST_API"):
    sys.meta_path.insert(0, PointNumerapi(os.environ["NUMERAI_PREDICT_TEST_API"]))

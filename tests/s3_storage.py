"""S3-compatible storage on loopback for the replica tests: moto's server, behind a gate that can cut it off.

The gate is a plain TCP relay in front of the server: open, it passes bytes both ways; shut, it
drops every connection it carries and refuses new ones, as a storage endpoint that went away
does. The server keeps what it stored meanwhile, so opening the gate again is the storage coming back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid

import requests
from moto.server import DomainDispatcherApplication, MotoRequestHandler, ThreadedMotoServer, create_backend_app
from werkzeug.serving import make_server

ACCESS_KEY_ID = "lbpay-test-access-key"
SECRET_ACCESS_KEY = "lbpay-test-secret-" + uuid.uuid4().hex


class Gate:
    """A TCP relay on a loopback port to ``target``; ``shut()`` cuts every connection, ``open()`` lets them in again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_open = threading.Event()
        self.is_open.set()
        self._lock = threading.Lock()
        self._carried: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="s3-gate", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.is_open.is_set():
                client.close()  # the storage is unreachable: the connection is refused at once
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._carried.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            with self._lock:
                self._carried.discard(source)
                self._carried.discard(sink)

    def shut(self) -> None:
        """Cut the storage off: every open connection is dropped, new ones are refused."""
        self.is_open.clear()
        with self._lock:
            carried, self._carried = list(self._carried), set()
        for end in carried:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def open(self) -> None:
        self.is_open.set()

    def close(self) -> None:
        self._closed = True
        self.shut()
        self.listener.close()


class QuietRequests(MotoRequestHandler):
    """moto's request handler without a log line per request (Litestream makes many)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class QuietMotoServer(ThreadedMotoServer):
    """moto's threaded server, serving with ``QuietRequests``."""

    def _server_entry(self) -> None:
        self._server = make_server(self._ip_address, self._port, DomainDispatcherApplication(create_backend_app),
                                   True, request_handler=QuietRequests)
        self._server_ready_event.set()
        self._server.serve_forever()


class S3Storage:
    """moto's S3-compatible server on loopback behind a ``Gate``; buckets made on demand."""

    def __init__(self) -> None:
        self.server = QuietMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.direct = f"http://{host}:{port}"
        self.gate = Gate((host, port))
        self.endpoint = f"http://127.0.0.1:{self.gate.port}"

    def bucket(self) -> str:
        """A new, empty bucket's name."""
        name = "lbpay-" + uuid.uuid4().hex[:12]
        response = requests.put(f"{self.direct}/{name}", timeout=10)
        assert response.status_code == 200, response.text
        return name

    def settings(self, bucket: str, path: str, seal_key: str) -> dict[str, str]:
        """The LBPAY_REPLICA_* settings that point a shop at ``s3://bucket/path`` here."""
        return {"LBPAY_REPLICA_URL": f"s3://{bucket}/{path}", "LBPAY_REPLICA_ENDPOINT": self.endpoint,
                "LBPAY_REPLICA_REGION": "us-east-1", "LBPAY_REPLICA_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "LBPAY_REPLICA_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, "LBPAY_REPLICA_KEY": seal_key}

    def close(self) -> None:
        self.gate.close()
        self.server.stop()


"""Endpoints that accept TCP connections and never answer: a black hole, and a proxy to a real S3
server that can turn into one mid-test (the server "has answered", then goes silent)."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlparse


class _Server:
    """A listening socket on a free loopback port, serving each connection in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        """Read whatever comes and never answer."""
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self._held:
            try:
                conn.close()
            except OSError:
                pass


class BlackHole(_Server):
    """Accepts every connection, reads the requests, never answers."""


class SilencingProxy(_Server):
    """Relays connections to ``upstream`` until :meth:`silence` is called; from then on it keeps
    every connection open (new ones too) and relays nothing more in either direction."""

    def __init__(self, upstream: str) -> None:
        url = urlparse(upstream)
        self.upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self.silent = threading.Event()
        super().__init__()

    def silence(self) -> None:
        self.silent.set()

    def serve(self, conn: socket.socket) -> None:
        if self.silent.is_set():
            return super().serve(conn)
        try:
            up = socket.create_connection(self.upstream)
        except OSError:
            conn.close()
            return
        self._held.append(up)
        threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()
        self._pump(conn, up)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.silent.is_set():
                    self.silent.wait()
                    while src.recv(65536):  # swallow everything from now on
                        pass
                    return
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

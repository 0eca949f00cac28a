"""The listening side of the TCP load generators: the client that asked last is the one they push to.

Standard library only (the generators run as their own processes and import no Home Assistant).
``OneClientServer`` accepts on 127.0.0.1 (bounded: ``MAX_CONNECTIONS`` connections, ``MAX_READS``
reads each), runs each connection in a thread and forgets a client whose connection ends; a
subclass says how a connection talks (``converse``) and calls ``target`` once a client may be
pushed to. ``GetPropertiesServer`` is the INDI one: each ``getProperties`` is answered with the
definitions and makes its sender the target.
"""

from __future__ import annotations

import socket
import threading
from typing import Final

MAX_CONNECTIONS: Final = 20
MAX_READS: Final = 1_000_000
CONNECT_WAIT: Final = 30.0
"""Seconds a push waits for a client to be there."""


class OneClientServer:
    """The listening socket and the one client pushes go to."""

    def __init__(self) -> None:
        """Listen on an ephemeral loopback port."""
        self.server = socket.create_server(("127.0.0.1", 0))
        self.lock = threading.Lock()
        self.client: socket.socket | None = None
        self.ready = threading.Event()

    @property
    def port(self) -> int:
        """Return the port listened on."""
        port: int = self.server.getsockname()[1]
        return port

    def accept_forever(self) -> None:
        """Serve each connection in its own thread (at most MAX_CONNECTIONS)."""
        for _ in range(MAX_CONNECTIONS):
            try:
                conn, _address = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        """Talk to one client until it goes; it is no longer the target then."""
        try:
            self.converse(conn)
        except OSError:
            pass
        finally:
            with self.lock:
                if self.client is conn:
                    self.client = None
                    self.ready.clear()
            conn.close()

    def converse(self, conn: socket.socket) -> None:
        """Answer what the client sends (OSError ends the connection)."""
        raise NotImplementedError

    def target(self, conn: socket.socket) -> None:
        """Make ``conn`` the client pushes go to (call with ``lock`` held)."""
        self.client = conn
        self.ready.set()

    def send(self, data: bytes) -> int:
        """Send ``data`` to the client; return the bytes sent (0 when no client is there)."""
        if not self.ready.wait(CONNECT_WAIT):
            return 0
        with self.lock:
            if self.client is None:
                return 0
            try:
                self.client.sendall(data)
            except OSError:
                return 0
        return len(data)


class GetPropertiesServer(OneClientServer):
    """An INDI server of fixed definitions: each getProperties is answered with them."""

    def __init__(self, definitions: bytes) -> None:
        """Answer with ``definitions``."""
        super().__init__()
        self.definitions = definitions

    def converse(self, conn: socket.socket) -> None:
        """Answer each getProperties (the first one, and liveness probes) with the definitions."""
        pending = b""
        for _ in range(MAX_READS):
            data = conn.recv(65536)
            if not data:
                break
            pending = (pending + data)[-4096:]
            if b"<getProperties" in pending:
                pending = b""
                with self.lock:
                    conn.sendall(self.definitions)
                    self.target(conn)

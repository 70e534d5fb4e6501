"""A TCP forwarder that can be cut: the way the recovery tests and `python -m bench.recovery`
make PostgreSQL unreachable for a few seconds without stopping a server that others use.

`cut()` drops every forwarded connection (the client sees the server close it, as when PostgreSQL
restarts) and resets every new one at once (the port stays ours, so nobody takes it meanwhile);
`restore()` forwards new connections again.
"""

from __future__ import annotations

import socket
import struct
import threading


class TCPProxy:
    """Forwards connections to 127.0.0.1:`port` to (`target_host`, `target_port`)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.forwarding = True
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="tcpproxy")

    def __enter__(self) -> TCPProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.cut()
        self.listener.close()

    def cut(self) -> None:
        """Drop every forwarded connection and reset new ones until `restore`."""
        with self.lock:
            self.forwarding = False
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def restore(self) -> None:
        """Forward new connections again."""
        with self.lock:
            self.forwarding = True

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self.lock:
                forwarding = self.forwarding
            if not forwarding:  # a reset, at once: the server is not there
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True,
                                 name="tcpproxy-pump").start()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from `source` to `sink` until either side closes."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

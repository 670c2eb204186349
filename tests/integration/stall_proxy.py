"""A TCP proxy in front of a real service that can make it look hung: ``stall()`` stops
forwarding on the connections open now (their peer sees a server that answers nothing) and
closes new ones at once; ``resume()`` drops the stalled connections, never delivering what
they held, and forwards new connections again."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    stalled: bool = False
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.close()


class StallProxy:
    """Forwards 127.0.0.1:``port`` to ``target`` (host, port); ``with`` stops it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stalled = False
        self._closing = False
        threading.Thread(target=self._accept, name="stall-proxy", daemon=True).start()

    def __enter__(self) -> StallProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def stall(self) -> None:
        with self._lock:
            self._stalled = True
            for link in self._links:
                link.stalled = True

    def resume(self) -> None:
        with self._lock:
            self._stalled = False
            stalled = [link for link in self._links if link.stalled]
            self._links = [link for link in self._links if not link.stalled]
        for link in stalled:
            link.close()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                stalled = self._stalled
            if stalled:
                client.close()  # a new connection to a hung server gets nowhere
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link,), daemon=True).start()

    def _pump(self, link: _Link) -> None:
        """Both directions of one link, until either side closes or the link is dropped."""
        ends = {link.client: link.upstream, link.upstream: link.client}
        while not link.closed.is_set():
            if link.stalled:
                link.closed.wait(0.02)
                continue
            try:
                ready, _, _ = select.select(list(ends), [], [], 0.05)
                for sock in ready:
                    if link.stalled:
                        break
                    data = sock.recv(65536)
                    if not data:
                        link.close()
                        return
                    ends[sock].sendall(data)
            except (OSError, ValueError):  # closed under us
                link.close()
                return

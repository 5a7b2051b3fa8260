"""The machine's PostgreSQL and Redis for the tests that need real ones.

`.ci/run` sets IMAGINE_TEST_POSTGRES_URL and IMAGINE_TEST_REDIS_URL (a Redis database of the
tests' own, flushed before the run). Without them these tests are reported as skipped with a
reason that says plainly that they did not run.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.votes.db import normalise_url

PG_ENV = "IMAGINE_TEST_POSTGRES_URL"
REDIS_ENV = "IMAGINE_TEST_REDIS_URL"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests did not run")
    schema = f"imagine_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def redis_database() -> Iterator[str]:
    """The tests' Redis database, empty before and after."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: Redis tests did not run")
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


class PrivateRedis:
    """A redis-server of the test's own, with an append-only file, that the test can stop
    and start again (the machine's shared Redis must not be restarted under other tests)."""

    def __init__(self, directory) -> None:
        import shutil
        import socket

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("redis-server is not installed: the Redis restart test did not run")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.directory = directory
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pause(self) -> None:
        """SIGSTOP: the server hangs. The kernel still accepts connections and takes the
        commands sent, but nothing is answered (a Redis stuck on a slow disk, or behind a
        network that drops packets, looks the same to its clients)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it serves again, starting with the commands that waited."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: Redis finishes its append-only file and exits
            self.process.wait(10)
            self.process = None


class TcpProxy:
    """A TCP forwarder in front of a server (PostgreSQL, Redis) that a test can `cut` — the
    port closed and every open connection dropped, as the app sees a database that went down
    — and `restore` on the same port; or tell to `lose_replies` on the next connection that
    sends given bytes."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._losing: list[bytes] = []  # markers, each silencing one connection
        self._silenced: set[socket.socket] = set()  # whose replies are dropped
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            if self._listener is not listener:  # cut while this one was being accepted
                self._drop(client)
                self._drop(upstream)
                return
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, client), daemon=True).start()

    def lose_replies(self, marker: bytes) -> None:
        """The next connection whose client sends `marker` gets no reply from then on: the
        server received the request and carries it out, but its answer is lost (a network
        that drops packets one way, or a server that answers after the client gave up)."""
        with self._lock:
            self._losing.append(marker)

    def _pump(self, source, sink, client) -> None:
        towards_client = sink is client
        try:
            while data := source.recv(65536):
                with self._lock:
                    if not towards_client and any(m in data for m in self._losing):
                        self._losing.remove(next(m for m in self._losing if m in data))
                        self._silenced.add(client)
                    silenced = client in self._silenced
                if not (towards_client and silenced):
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._drop(sock)

    def _drop(self, sock) -> None:
        with self._lock:
            self._sockets.discard(sock)
            self._silenced.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._drop(sock)

    def restore(self) -> None:
        self.start()

    def url(self, database_url: str) -> str:
        """`database_url` pointed at this proxy instead of the server."""
        proxied = make_url(normalise_url(database_url)).set(host="127.0.0.1", port=self.port)
        return proxied.render_as_string(hide_password=False)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cut()

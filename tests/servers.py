"""Real Redis and memcached servers on free 127.0.0.1 ports, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"
# Upper bound for a server to answer after it was started (a readiness poll).
READY_DEADLINE = 20.0


class ServerError(RuntimeError):
    """A server could not be started or did not answer in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    """Return the path of the executable `name` (PATH, then /usr/bin and /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


class Server:
    """One server process on a fixed port; `stop()` and `start()` reuse the same port."""

    #: Bytes sent to check that the server answers, and the reply's expected start.
    probe: bytes = b""
    reply: bytes = b""
    kind = "server"
    #: Stop with SIGKILL rather than SIGTERM (for servers with nothing to save).
    kill_to_stop = False

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.kind}-{port}.log"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self.port} {state}>"

    @property
    def location(self) -> str:
        """`host:port`, as Django's memcached LOCATION wants it."""
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start the server on its port and return once it answers."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C in the terminal is for pytest, not for it
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Poll the port until the server answers its probe (bounded by READY_DEADLINE)."""
        assert self.process is not None
        deadline = time.monotonic() + READY_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.kind} on port {self.port} exited with {self.process.returncode}; "
                    f"log: {self.log_tail()}"
                )
            if self.answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.kind} on port {self.port} did not answer in time")
            # Doubles as the poll interval and as the "did it die?" check.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.02)

    def answers(self) -> bool:
        """Tell whether the server answers its probe on its port right now."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(self.probe)
                data = b""
                while len(data) < len(self.reply):
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    data += chunk
                return data.startswith(self.reply)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (it refuses connections once this returns)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.kill_to_stop:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"


class RedisServer(Server):
    """redis-server without persistence."""

    kind = "redis"
    probe = b"PING\r\n"
    reply = b"+PONG"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]


class MemcachedServer(Server):
    """memcached, TCP only."""

    kind = "memcached"
    # memcached lingers for a second on SIGTERM; it keeps nothing, so kill it.
    kill_to_stop = True
    probe = b"version\r\n"
    reply = b"VERSION"

    def command(self) -> list[str]:
        cmd = [self.binary, "-l", HOST, "-p", str(self.port), "-U", "0", "-m", "64", "-t", "2"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd += ["-u", "root"]  # memcached refuses to run as root without it
        return cmd


def start_server(cls: type[Server], binary: str, workdir: Path, attempts: int = 5) -> Server:
    """Start a `cls` server on a free port, trying another port if one was taken meanwhile."""
    error: Exception | None = None
    for _ in range(attempts):
        server = cls(binary, free_port(), workdir)
        try:
            server.start()
            return server
        except ServerError as exc:
            error = exc
    raise ServerError(f"could not start {cls.kind}: {error}")

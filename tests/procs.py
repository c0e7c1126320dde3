"""Run keyedcache code in real, separate Python processes configured like the test process.

Two ways, both start `sys.executable` with Django set up from tests.settings:

- `run_in_child(env, target, ...)`: a fresh process for one call (the env is its real
  environment, read by tests.settings at import), then it exits.
- `Worker` / `WorkerPool`: long-lived processes answering calls over pipes; each call
  carries the backend env, which the worker applies with override_settings (CACHES,
  the cache database alias, extra settings) before running the call. The tests'
  `child` and `children` fixtures hand out workers bound to the current backend.

A target is a code string or an importable module-level callable. A code string is
evaluated as an expression if it is one, else executed (set `result` to return
something); keyword arguments become its variables, and the names of
`keyedcache.__all__` plus `caches`, `cache_store` (the default KeyedCache) and
`counters` are predefined. Arguments and results travel pickled, so any picklable
value works; an exception in the child is raised in the parent as ChildError, with
the child's traceback and, when it pickles, the original exception as `.exception`.

A worker keeps its process state between calls (imported modules and their
globals, keyedcache's counters); when a call brings a different backend env, the
worker swaps the settings override, closes the old cache connections and turns
keyedcache back on (`cache_enable(True)`). Database connections are closed after
every call, so the parent can flush and drop the test databases.

`Gate` lets the parent hold children at a point and release them together, without
sleeping: a child calls `gate_wait(address)`; the parent calls `gate.wait_arrivals(n)`
then `gate.open()`.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import pickle
import selectors
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 60.0

#: Env vars a worker process is started with and cannot change afterwards.
PROCESS_ENV_KEYS = (
    "KEYEDCACHE_TEST_TMP",
    "KEYEDCACHE_TEST_DB_NAME",
    "KEYEDCACHE_TEST_PG",
    "KEYEDCACHE_TEST_PG_NAME",
)
#: Env vars a worker applies per call (they only change settings).
SETTINGS_ENV_KEYS = (
    "KEYEDCACHE_TEST_CACHES",
    "KEYEDCACHE_TEST_CACHE_DB",
    "KEYEDCACHE_TEST_SETTINGS",
)


class ChildError(RuntimeError):
    """A call failed in a child process; `.child_traceback` is its traceback."""

    def __init__(self, message: str, child_traceback: str = "", exception: Any = None) -> None:
        super().__init__(f"{message}\n--- child traceback ---\n{child_traceback}".rstrip())
        self.child_traceback = child_traceback
        self.exception = exception


def process_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the full environment for a child: ours, plus Django settings, plus `env`."""
    full = dict(os.environ)
    full["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    full["KEYEDCACHE_TEST_CHILD"] = "1"
    full["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([full["PYTHONPATH"]] if full.get("PYTHONPATH") else [])]
    )
    full.setdefault("PYTHONHASHSEED", "random")
    full.pop("PYTEST_CURRENT_TEST", None)
    full.update(env or {})
    return full


def _encode(obj: Any) -> bytes:
    return base64.b64encode(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)) + b"\n"


def _decode(line: bytes) -> Any:
    return pickle.loads(base64.b64decode(line))


def _describe_target(target: str | Callable[..., Any]) -> dict[str, Any]:
    if isinstance(target, str):
        return {"code": textwrap.dedent(target)}
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", "")
    if not module or "<" in qualname:
        raise ValueError(
            f"{target!r} cannot run in a child process: pass a module-level function "
            "(importable by its module and name) or a code string"
        )
    if module == "__main__":
        raise ValueError(f"{target!r} lives in __main__, which a child cannot import")
    return {"func": f"{module}:{qualname}"}


# -- parent side ----------------------------------------------------------------


class Pending:
    """The answer to a call that is running in a worker."""

    def __init__(self, worker: Worker, what: str) -> None:
        self.worker = worker
        self.what = what
        self._done = False
        self._value: Any = None

    def result(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Wait (at most `timeout` seconds) for the call and return what it returned."""
        if not self._done:
            self._value = self.worker._receive(self, timeout)
            self._done = True
        reply = self._value
        if reply["ok"]:
            return reply["result"]
        try:
            exception = pickle.loads(reply["exception"]) if reply.get("exception") else None
        except Exception:
            exception = None
        raise ChildError(
            f"{self.what} failed in child pid {self.worker.pid}: {reply['error']}",
            reply["traceback"],
            exception,
        )


class Worker:
    """A long-lived child process that runs calls one after the other."""

    def __init__(self, env: Mapping[str, str] | None = None, *, log_dir: str | None = None) -> None:
        self.env = dict(env or {})
        log_dir = log_dir or self.env.get("KEYEDCACHE_TEST_TMP") or tempfile.gettempdir()
        os.makedirs(log_dir, exist_ok=True)
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix="child-", suffix=".log", dir=log_dir, delete=False
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.procs import worker_main; worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=process_env(self.env),
        )
        self.pid = self.process.pid
        self._buffer = b""
        #: Threads alive in the child after its last answer (1: only its main thread).
        self.threads = 1
        self._queue: list[Pending] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Worker pid={self.pid} {'alive' if self.alive else 'dead'}>"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def busy(self) -> bool:
        """True while a submitted call has not been answered (or its answer not read)."""
        return bool(self._queue)

    def submit(
        self,
        target: str | Callable[..., Any],
        *args: Any,
        env: Mapping[str, str] | None = None,
        **variables: Any,
    ) -> Pending:
        """Start `target` in the worker and return at once; `.result()` waits for it."""
        request = _describe_target(target)
        request.update(args=args, vars=variables, env=dict(env) if env is not None else None)
        what = request.get("func") or "code " + repr(request["code"][:60])
        pending = Pending(self, what)
        with self._lock:
            if not self.alive:
                raise ChildError(f"child pid {self.pid} is not running", self.log_tail())
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(_encode(request))
                self.process.stdin.flush()
            except BrokenPipeError:
                raise ChildError(f"child pid {self.pid} went away", self.log_tail()) from None
            self._queue.append(pending)
        return pending

    def call(
        self,
        target: str | Callable[..., Any],
        *args: Any,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        **variables: Any,
    ) -> Any:
        """Run `target` in the worker and return its result (raises ChildError)."""
        return self.submit(target, *args, env=env, **variables).result(timeout)

    def _receive(self, pending: Pending, timeout: float) -> dict[str, Any]:
        # Answers come in submission order: read (and keep) earlier ones first.
        with self._lock:
            while pending in self._queue:
                head = self._queue[0]
                reply = self._read_reply(timeout)
                self._queue.pop(0)
                if head is not pending:
                    head._value, head._done = reply, True
                else:
                    return reply
        raise AssertionError("reply already consumed")  # pragma: no cover

    def _read_reply(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        # selectors (epoll/poll), not select.select: a long session holds many
        # sockets, and select() cannot watch a descriptor above 1023.
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise ChildError(
                        f"child pid {self.pid} did not answer within {timeout:g}s (killed)",
                        self.log_tail(),
                    )
                if not selector.select(remaining):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.process.wait(timeout=10)
                    raise ChildError(
                        f"child pid {self.pid} exited with {self.process.returncode}",
                        self.log_tail(),
                    )
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = _decode(line)
        self.threads = reply.get("threads", 1)
        return reply

    def log_tail(self, size: int = 4000) -> str:
        """The end of the child's stderr (its prints and logging go there too)."""
        try:
            return Path(self._log.name).read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def kill(self) -> None:
        """Kill the process at once (used when it hangs)."""
        if self.alive:
            self.process.kill()
        self.process.wait(timeout=10)

    def close(self, timeout: float = 10.0) -> None:
        """Ask the process to exit (closing its stdin), kill it if it does not."""
        if self.alive:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


class WorkerPool:
    """Long-lived workers shared by a test session, started on first use."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = {k: v for k, v in (env or {}).items() if k in PROCESS_ENV_KEYS}
        self.workers: list[Worker] = []

    def take(self, count: int = 1) -> list[Worker]:
        """Return `count` idle, running workers (starting more when needed)."""
        self.reset()
        while len(self.workers) < count:
            self.workers.append(Worker(self.env))
        return self.workers[:count]

    def reset(self) -> None:
        """Drop workers a test left behind busy, dead, or running threads of its own.

        Threads left running would go on using the cache with the next test's
        settings, so such a worker is not lent again.
        """
        for worker in list(self.workers):
            if worker.busy or not worker.alive or worker.threads > 1:
                self.workers.remove(worker)
                worker.kill()
                worker.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []


def run_in_child(
    env: Mapping[str, str] | None,
    target: str | Callable[..., Any],
    *args: Any,
    timeout: float = DEFAULT_TIMEOUT,
    **variables: Any,
) -> Any:
    """Run `target` in a fresh child process whose environment includes `env`; return its result."""
    worker = Worker(env)
    try:
        return worker.call(target, *args, timeout=timeout, **variables)
    finally:
        worker.close()


def run_in_children(
    env: Mapping[str, str] | None,
    target: str | Callable[..., Any],
    count: int,
    *args: Any,
    timeout: float = DEFAULT_TIMEOUT,
    **variables: Any,
) -> list[Any]:
    """Run `target` in `count` fresh child processes at the same time; return their results."""
    workers = [Worker(env) for _ in range(count)]
    try:
        pending = [w.submit(target, *args, **variables) for w in workers]
        return [p.result(timeout) for p in pending]
    finally:
        for worker in workers:
            worker.close()


class BoundWorker:
    """A worker plus the env of the backend under test: what the `child` fixture returns."""

    def __init__(self, worker: Worker, env: Mapping[str, str]) -> None:
        self.worker = worker
        self.env = dict(env)

    @property
    def pid(self) -> int:
        return self.worker.pid

    def run(
        self,
        target: str | Callable[..., Any],
        *args: Any,
        timeout: float = DEFAULT_TIMEOUT,
        **variables: Any,
    ) -> Any:
        """Run `target` in the child against the current backend; return its result."""
        return self.worker.call(target, *args, env=self.env, timeout=timeout, **variables)

    def submit(self, target: str | Callable[..., Any], *args: Any, **variables: Any) -> Pending:
        """Start `target` in the child and return a Pending at once."""
        return self.worker.submit(target, *args, env=self.env, **variables)


class Gate:
    """A barrier across processes on a local TCP socket (no sleeping, bounded waits)."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._arrived: list[socket.socket] = []

    @property
    def address(self) -> str:
        host, port = self._server.getsockname()
        return f"{host}:{port}"

    def wait_arrivals(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Block until `count` processes in total called gate_wait()."""
        deadline = time.monotonic() + timeout
        while len(self._arrived) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"only {len(self._arrived)} of {count} arrived at the gate")
            self._server.settimeout(remaining)
            conn, _ = self._server.accept()
            conn.settimeout(timeout)
            self._arrived.append(conn)

    def open(self) -> None:
        """Release every process waiting at the gate (later arrivals are refused)."""
        for conn in self._arrived:
            with contextlib.suppress(OSError):
                conn.sendall(b"g")
        self.close()

    def close(self) -> None:
        for conn in self._arrived:
            with contextlib.suppress(OSError):
                conn.close()
        self._arrived = []
        with contextlib.suppress(OSError):
            self._server.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def gate_wait(address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Called in a child: announce arrival at the gate, then block until it opens."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        if sock.recv(1) != b"g":
            raise RuntimeError("the gate closed without opening")


def append_line(path: str | Path, text: str = "") -> int:
    """Append one line with a single O_APPEND write (safe across processes); return the
    lines now in the file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)
    return len(read_lines(path))


def read_lines(path: str | Path) -> list[str]:
    """The lines of a file written by `append_line` ([] before the first)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []


# -- child side -----------------------------------------------------------------


def _settings_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    from tests import settings as test_settings

    overrides: dict[str, Any] = {
        "CACHES": json.loads(env["KEYEDCACHE_TEST_CACHES"])
        if env.get("KEYEDCACHE_TEST_CACHES")
        else test_settings.default_caches(),
        "KEYEDCACHE_TEST_CACHE_DB": env.get("KEYEDCACHE_TEST_CACHE_DB", "default"),
    }
    if env.get("KEYEDCACHE_TEST_SETTINGS"):
        overrides.update(json.loads(env["KEYEDCACHE_TEST_SETTINGS"]))
    return overrides


class _ChildState:
    """What a worker process keeps between calls: the settings override in effect."""

    def __init__(self) -> None:
        self.override: Any = None
        self.applied: str | None = None

    def apply(self, env: Mapping[str, str] | None) -> None:
        if env is None:
            return
        for key in PROCESS_ENV_KEYS:
            if key in env and env[key] != os.environ.get(key):
                raise RuntimeError(
                    f"this worker was started with {key}={os.environ.get(key)!r}, "
                    f"the call needs {env[key]!r}: use another worker"
                )
        wanted = json.dumps({k: env.get(k) for k in SETTINGS_ENV_KEYS}, sort_keys=True)
        if wanted == self.applied:
            return
        from django.core.cache import caches
        from django.test.utils import override_settings

        import keyedcache

        if self.override is not None:
            caches.close_all()
            self.override.disable()
            self.override = None
            self.applied = None
        override = override_settings(**_settings_overrides(env))
        override.enable()
        self.override, self.applied = override, wanted
        for key in SETTINGS_ENV_KEYS:
            if env.get(key) is not None:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        # A new backend starts a new test: keyedcache's per-process switch is on.
        keyedcache.cache_enable(True)


def _namespace(variables: Mapping[str, Any]) -> dict[str, Any]:
    from django.core.cache import caches

    import keyedcache
    from keyedcache.counters import counters

    ns: dict[str, Any] = {name: getattr(keyedcache, name) for name in keyedcache.__all__}
    ns.update(
        __name__="__child__",
        keyedcache=keyedcache,
        caches=caches,
        cache_store=keyedcache.default_cache(),
        counters=counters,
        os=os,
        time=time,
    )
    ns.update(variables)
    return ns


def _run(request: Mapping[str, Any]) -> Any:
    if request.get("func"):
        module_name, qualname = request["func"].split(":", 1)
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        return target(*request["args"], **request["vars"])
    code = request["code"]
    ns = _namespace(request["vars"])
    try:
        compiled = compile(code.strip(), "<child code>", "eval")
    except SyntaxError:
        exec(compile(code, "<child code>", "exec"), ns)
        return ns.get("result")
    return eval(compiled, ns)


def _pickled_or_none(obj: Any) -> bytes | None:
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


def _reply_bytes(reply: dict[str, Any]) -> bytes:
    try:
        return _encode(reply)
    except Exception as exc:  # an unpicklable result
        return _encode(
            {
                "ok": False,
                "error": f"the result {reply['result']!r:.200} cannot be pickled ({exc})",
                "traceback": "",
                "threads": reply.get("threads", 1),
            }
        )


def worker_main() -> None:
    """Entry point of a child process: answer pickled calls on stdin until it closes."""
    # Replies go to the real stdout; whatever the code prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import django

        django.setup()
        from django.db import connections

        state = _ChildState()
    except BaseException:
        traceback.print_exc()
        raise
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        request = _decode(line)
        try:
            state.apply(request.get("env"))
            reply = {"ok": True, "result": _run(request)}
        except BaseException as exc:
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "exception": _pickled_or_none(exc),
            }
        finally:
            # Leave no transaction or connection open between calls (the parent may
            # flush or drop the test databases).
            connections.close_all()
        reply["threads"] = threading.active_count()
        out.write(_reply_bytes(reply))
        out.flush()


@contextlib.contextmanager
def pool_workers(
    pool: WorkerPool, env: Mapping[str, str], count: int
) -> Iterator[list[BoundWorker]]:
    """Lend `count` workers of `pool`, bound to `env`; kill the ones left busy afterwards."""
    try:
        yield [BoundWorker(w, env) for w in pool.take(count)]
    finally:
        pool.reset()

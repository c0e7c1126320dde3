"""Real Redis topologies for the tests: a primary with a replica, a Sentinel group, a cluster."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers import HOST, READY_DEADLINE, RedisServer, ServerError, find_binary, free_port

#: Seconds a topology gets to settle (replication link up, sentinels agreeing, slots served).
SETTLE_DEADLINE = 60.0


def redis_client(port: int) -> Any:
    """A plain redis-py client of the server on `port` (short timeouts: servers may be dead)."""
    import redis

    return redis.Redis(host=HOST, port=port, socket_timeout=2.0, socket_connect_timeout=2.0)


def wait_until(what: str, predicate: Callable[[], bool], deadline: float = SETTLE_DEADLINE) -> None:
    """Poll `predicate` until it holds; ServerError naming `what` once `deadline` passes.

    Servers settle on their own schedule (replication handshakes, gossip); a poll
    against a deadline is how the tests wait for a state, never a fixed sleep.
    """
    limit = time.monotonic() + deadline
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if time.monotonic() > limit:
            raise ServerError(f"timed out waiting for {what}")
        time.sleep(0.05)


def info(port: int, section: str) -> dict[str, str]:
    """The INFO `section` of the server on `port`, as text fields."""
    raw = redis_client(port).execute_command("INFO", section)
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v for k, v in pairs}


class RedisNode(RedisServer):
    """A redis-server with extra command-line arguments (replica, cluster node)."""

    def __init__(self, binary: str, port: int, workdir: Path, extra: list[str]) -> None:
        super().__init__(binary, port, workdir)
        self.extra = extra

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]


def _binary(name: str) -> str:
    binary = find_binary(name)
    if binary is None:
        raise ServerError(f"{name} not installed")
    return binary


def start_node(workdir: Path, extra: Callable[[int], list[str]]) -> RedisNode:
    """Start a redis-server on a free port with `extra(port)` arguments."""
    binary = _binary("redis-server")
    error: Exception | None = None
    for _ in range(5):
        port = free_port()
        node = RedisNode(binary, port, workdir, extra(port))
        try:
            node.start()
            return node
        except ServerError as exc:
            error = exc
    raise ServerError(f"could not start redis-server: {error}")


class ReplicaPair:
    """A primary and one replica of it, replication link up."""

    def __init__(self, workdir: Path) -> None:
        self.primary = start_node(workdir, lambda port: [])
        self.replica = start_node(
            workdir, lambda port: ["--replicaof", HOST, str(self.primary.port)]
        )
        wait_until(
            "the replica's link to its primary",
            lambda: info(self.replica.port, "replication").get("master_link_status") == "up",
        )

    def stop(self) -> None:
        for node in (self.replica, self.primary):
            node.stop()


class SentinelNode(RedisServer):
    """One redis-sentinel watching the primary named `service`."""

    kind = "sentinel"

    def __init__(self, binary: str, port: int, workdir: Path, service: str, primary: int) -> None:
        super().__init__(binary, port, workdir)
        self.config = workdir / f"sentinel-{port}.conf"
        # Sentinel rewrites its config file as it learns; each gets its own.
        self.config.write_text(
            f"port {port}\nbind {HOST}\ndir {workdir}\n"
            f"sentinel monitor {service} {HOST} {primary} 2\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
            f"sentinel parallel-syncs {service} 1\n"
        )

    def command(self) -> list[str]:
        return [self.binary, str(self.config)]


class SentinelGroup:
    """A primary with a replica, watched by three sentinels that know each other."""

    service = "keyedcache"

    def __init__(self, workdir: Path) -> None:
        self.pair = ReplicaPair(workdir)
        binary = find_binary("redis-sentinel") or _binary("redis-server")
        self.sentinels: list[SentinelNode] = []
        try:
            for _ in range(3):
                node = SentinelNode(
                    binary, free_port(), workdir, self.service, self.pair.primary.port
                )
                node.start()
                self.sentinels.append(node)
            wait_until("sentinels that see each other and the replica", self._settled)
        except BaseException:
            self.stop()
            raise

    def _settled(self) -> bool:
        for node in self.sentinels:
            client = redis_client(node.port)
            if len(client.execute_command("SENTINEL", "SENTINELS", self.service)) < 2:
                return False
            if not client.execute_command("SENTINEL", "REPLICAS", self.service):
                return False
        return True

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each sentinel, as SENTINELS options want them."""
        return [(HOST, node.port) for node in self.sentinels]

    def primary_port(self) -> int:
        """The port of the server the sentinels name as primary right now."""
        reply = redis_client(self.sentinels[0].port).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
        )
        return int(reply[1])

    def stop(self) -> None:
        for node in self.sentinels:
            node.stop()
        self.pair.stop()


class RedisCluster:
    """`primaries` cluster-enabled redis-servers (each with `replicas` replicas), slots served."""

    def __init__(self, workdir: Path, primaries: int = 3, replicas: int = 0) -> None:
        self.workdir = workdir
        self.nodes: list[RedisNode] = []
        try:
            for _ in range(primaries * (1 + replicas)):
                self.nodes.append(start_node(workdir, self._node_args))
            command = [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *(f"{HOST}:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=READY_DEADLINE, check=False
            )
            if done.returncode != 0:
                raise ServerError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}")
            wait_until("cluster_state:ok on every node", self.healthy)
        except BaseException:
            self.stop()
            raise

    def _node_args(self, port: int) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.workdir / f"nodes-{port}.conf"),
            "--cluster-node-timeout",
            "1000",
        ]

    def healthy(self) -> bool:
        """True when every running node says cluster_state:ok and every replica is linked."""
        for node in self.nodes:
            if not node.running:
                continue
            if info(node.port, "cluster").get("cluster_enabled") != "1":
                return False
            state = redis_client(node.port).execute_command("CLUSTER", "INFO")
            text = state.decode() if isinstance(state, bytes) else str(state)
            if "cluster_state:ok" not in text:
                return False
            replication = info(node.port, "replication")
            if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                return False
        return True

    @property
    def url(self) -> str:
        """A URL of one node: cluster clients discover the others from it."""
        return f"redis://{HOST}:{self.nodes[0].port}"

    def primaries(self) -> list[RedisNode]:
        """The running nodes that serve slots as primaries right now."""
        return [
            node
            for node in self.nodes
            if node.running and info(node.port, "replication").get("role") == "master"
        ]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

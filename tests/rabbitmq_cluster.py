"""A private RabbitMQ cluster for the tests: Debian's rabbitmq-server, nodes of our own.

Each node has its own name, AMQP and distribution ports (free loopback ports), data and
log directories and configuration, all under one temporary directory; the nodes share an
Erlang cookie (in the ``HOME`` they share) and talk over loopback only, through an epmd
of their own on a free port (so that their names cannot clash with any other node's,
and nothing of theirs outlives them). The package's system node is never touched. As
``.ci/setup-rabbitmq.sh`` does for the compat node, but in Python, so that a test module
can start a cluster, take a node away, and stop everything at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
EPMD_GLOB = "/usr/lib/erlang/erts-*/bin/epmd"
START_TIMEOUT = float(os.environ.get("XIVO_BUS_RABBITMQ_START_TIMEOUT", "120"))
OPEN_FILES = 65536  # as .ci/setup-rabbitmq.sh: enough for RabbitMQ, not a million


class ClusterError(Exception):
    """A node did not start, or a rabbitmqctl command failed; the message says which."""


def available() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_amqp(port: int) -> bool:
    """True once the port answers the AMQP 0-9-1 header with a method frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


def poll(predicate, what: str, timeout: float = START_TIMEOUT, every: float = 0.2):
    """Call ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise ClusterError(f"{what}: not within {timeout:g} s")
        time.sleep(every)
    return result


# Erlang sizes its port table by the open files limit: raise a low one, lower a huge one
# (as .ci/setup-rabbitmq.sh does), in a shell, since preexec_fn is not safe with threads.
RAISE_OPEN_FILES = (
    f'ulimit -n {OPEN_FILES} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"'
)


@dataclass
class Node:
    name: str  # e.g. xivo-bus-cluster-a@localhost
    base: Path
    home: Path  # holds the shared Erlang cookie
    epmd_port: int
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        """What the node and rabbitmqctl share."""
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            # rabbitmqctl is a distributed Erlang node too: any free port, rather than
            # the fixed range 35672-35682 every rabbitmqctl on the machine shares
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
        }

    def configure(self) -> None:
        for directory in ("mnesia", "log"):
            (self.base / directory).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\ndisk_free_limit.absolute = 10MB\n"
        )
        (self.base / "advanced.config").write_text(
            "[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n"
        )

    def start(self) -> None:
        """Start the node in the background (its own session); see ``wait_started``."""
        env = {
            **self.env(),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
        }
        with open(self.base / "server.out", "wb") as out:
            self.proc = subprocess.Popen(
                ["sh", "-c", RAISE_OPEN_FILES, "sh", str(RABBITMQ_BIN / "rabbitmq-server")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise ClusterError(f"RabbitMQ node {self.name} exited:\n{self.output()}")
            return answers_amqp(self.port)

        try:
            poll(up, f"RabbitMQ node {self.name} accepting AMQP on port {self.port}", timeout)
        except ClusterError as error:
            raise ClusterError(f"{error}\n{self.output()}") from None

    def output(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = (self.base / "server.out").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def ctl(self, *args: str, timeout: float = 120, check: bool = True):
        """``rabbitmqctl -n NODE ARGS``; raises ``ClusterError`` on failure if ``check``."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", self.name, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise ClusterError(
                f"rabbitmqctl -n {self.name} {' '.join(args)}: exit {done.returncode}\n"
                f"{done.stdout}{done.stderr}"
            )
        return done

    def beam_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.base / "node.pid").read_text().strip())
        return None

    def kill(self) -> None:
        """Lose the node at once (SIGKILL to its Erlang VM and everything it started)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM (RabbitMQ stops cleanly), then SIGKILL what is left of its session."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # the wrapper script may be gone while the VM lingers: kill the whole session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        pid = self.beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


class Cluster:
    """Nodes ``a``, ``b``... started together, the others joined to the first."""

    def __init__(self, letters: str = "ab", prefix: str = "xivo-bus-cluster"):
        self.base = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        home = self.base / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        self.epmd_port = free_port()
        self.epmd: subprocess.Popen | None = None
        self.nodes = [
            Node(f"{prefix}-{letter}@localhost", self.base / letter, home, self.epmd_port)
            for letter in letters
        ]
        self.startup_seconds: float | None = None

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> None:
        began = time.monotonic()
        self._start_epmd()
        for node in self.nodes:
            node.configure()
            node.start()
        for node in self.nodes:
            node.wait_started()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")  # returns once the node runs, in the cluster
            node.wait_started()
        self.startup_seconds = time.monotonic() - began

    def _start_epmd(self) -> None:
        """Our own epmd, a child of ours on loopback: the nodes find it by ERL_EPMD_PORT
        rather than starting one (which would live on inside a node's session)."""
        found = sorted(glob.glob(EPMD_GLOB)) or [shutil.which("epmd")]
        if found[-1] is None:
            raise ClusterError("no epmd (Erlang's port mapper) found")
        self.epmd = subprocess.Popen(
            [found[-1], "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def listening() -> bool:
            if self.epmd.poll() is not None:
                raise ClusterError(f"epmd on port {self.epmd_port} exited")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.epmd_port), timeout=1),
            ):
                return True
            return False

        poll(listening, f"epmd listening on port {self.epmd_port}", every=0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)

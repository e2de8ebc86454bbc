"""The brokers that ``benchmarks/compare`` measures, each on a free loopback port.

``Ours`` runs ``xivo-bus serve`` from this checkout; ``RabbitMQ`` runs a private node of
Debian's rabbitmq-server package (its own node name, ports, data, logs, config and Erlang
cookie in a temporary directory; the system node is never touched); ``GarageMQ`` runs
Debian's garagemq (a Go broker) with a config file of its own, modelled on the package's
/etc/garagemq/config.yaml, in a temporary directory. Each records how long it took from
process start to answering the AMQP protocol header.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
ERLANG_ROOT = Path("/usr/lib/erlang")
GARAGEMQ = Path("/usr/bin/garagemq")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_amqp(port: int) -> bool:
    """True once the port answers the AMQP 0-9-1 header with a method frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(7)[:1] == b"\x01"
    except OSError:
        return False


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _wait_until_answering(proc: subprocess.Popen, port: int, started: float, timeout: float):
    while time.monotonic() - started < timeout:
        if answers_amqp(port):
            return time.monotonic() - started
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} before accepting")
        time.sleep(0.005)
    raise RuntimeError(f"broker did not answer on port {port} within {timeout} s")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Ours:
    name = "xivo-bus"

    def __init__(self, extra_args: list[str] | None = None) -> None:
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0
        self.data_dir = tempfile.mkdtemp(prefix="xivo-bus-bench-")
        self.options = options = _serve_help()
        self.has_cti = "--no-cti" in options
        # By default the broker alone, as RabbitMQ is measured without plugins: no
        # call-form web service, management API or Prometheus metrics, where this version
        # of serve has them (they would also take fixed ports).
        if extra_args is None:
            extra_args = [
                option
                for option in ("--no-cti", "--no-management", "--no-prometheus")
                if option in options
            ]
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def version(self) -> str:
        from xivo_bus import __version__

        return f"xivo-bus {__version__}, Python {sys.version.split()[0]}"

    def start(self) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "xivo_bus", "serve", "--port", str(self.port)]
        command += ["--data-dir", self.data_dir, *self.extra_args]
        started = time.monotonic()
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=_raise_fd_limit)
        self.startup_s = _wait_until_answering(self.proc, self.port, started, 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            _wait_or_kill(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _serve_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "xivo_bus", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


class RabbitMQ:
    name = "RabbitMQ"

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="xivo-bus-bench-rabbitmq-"))
        self.node = f"xivo-bench-{os.getpid()}@localhost"
        self.port = 0
        self.launcher: subprocess.Popen | None = None
        self.beam_pid = 0
        self.startup_s = 0.0
        self._epmd_was_running = _epmd_running()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def pid(self) -> int:
        return self.beam_pid

    @property
    def data_path(self) -> Path:
        return self.base / "mnesia"

    @property
    def version(self) -> str:
        package = _dpkg_version("rabbitmq-server")
        erlang = _dpkg_version("erlang-base")
        return f"RabbitMQ {package} (Debian), Erlang {erlang}"

    def _env(self) -> dict:
        base = self.base
        return {
            **os.environ,
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "no-rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> None:
        self.port, self.dist_port = free_port(), free_port()
        base = self.base
        (base / "home").mkdir(exist_ok=True)
        cookie = base / "home" / ".erlang.cookie"
        cookie.write_text(f"xivobench{os.getpid()}")
        cookie.chmod(0o400)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        started = time.monotonic()
        self.launcher = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self._env(),
            stdout=open(base / "server.stdout", "wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_fd_limit,
            start_new_session=True,
        )
        self.startup_s = _wait_until_answering(self.launcher, self.port, started, 120)
        self.beam_pid = self._find_beam()

    def _find_beam(self) -> int:
        pid_file = self.base / "node.pid"
        if pid_file.exists() and pid_file.read_text().strip().isdigit():
            return int(pid_file.read_text().strip())
        # Otherwise the beam.smp whose command line names our node's data directory.
        mnesia = str(self.base / "mnesia")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "beam.smp" in cmdline and mnesia in cmdline:
                return int(entry.name)
        raise RuntimeError("cannot find the RabbitMQ node's beam.smp process")

    def stop(self) -> None:
        if self.launcher is None:
            return
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", self.node, "stop"],
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        for pid in (self.beam_pid, self.launcher.pid):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGTERM)
        _wait_or_kill(self.launcher)
        self.launcher = None
        if not self._epmd_was_running:
            # Only the epmd our node started; it refuses to stop while other nodes use it.
            for epmd in ERLANG_ROOT.glob("erts-*/bin/epmd"):
                subprocess.run([str(epmd), "-kill"], capture_output=True, check=False)
                break

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class GarageMQ:
    """Debian's garagemq: the package's configuration with ports, data directory and log
    of its own, and TCP_NODELAY on as the other two brokers have it (the package's
    ``nodelay: false`` would hold small replies and confirms back behind Nagle's
    algorithm)."""

    name = "GarageMQ"
    available = GARAGEMQ.exists()

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="xivo-bus-bench-garagemq-"))
        self.port = 0
        self.admin_port = 0
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def data_path(self) -> Path:
        return self.base / "db"

    @property
    def version(self) -> str:
        package = _dpkg_version("garagemq").split("+")[0]
        return f"GarageMQ {package} (Debian), {_go_version(GARAGEMQ)}"

    def _config(self) -> str:
        # The structure and values of the package's /etc/garagemq/config.yaml.
        return "\n".join(
            [
                "proto: amqp-rabbit",
                "users:",
                "  - username: guest",
                "    password: 084e0343a0486ff05530df6c705c8bb4 # md5 of guest",
                "tcp:",
                "  ip: 127.0.0.1",
                f"  port: {self.port}",
                "  nodelay: true",
                "  readBufSize: 196608",
                "  writeBufSize: 196608",
                "admin:",
                "  ip: 127.0.0.1",
                f"  port: {self.admin_port}",
                "queue:",
                "  shardSize: 8192",
                "  maxMessagesInRam: 131072",
                "db:",
                f"  defaultPath: {self.base / 'db'}",
                "  engine: badger",
                "vhost:",
                "  defaultPath: /",
                "security:",
                "  passwordCheck: md5",
                "connection:",
                "  channelsMax: 4096",
                "  frameMaxSize: 65536",
                "",
            ]
        )

    def start(self) -> None:
        self.port, self.admin_port = free_port(), free_port()
        config = self.base / "config.yaml"
        config.write_text(self._config())
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(GARAGEMQ), "--config", str(config), "--log-file", str(self.base / "log")],
            cwd=self.base,
            stdout=open(self.base / "server.stdout", "ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_fd_limit,
            start_new_session=True,
        )
        self.startup_s = _wait_until_answering(self.proc, self.port, started, 60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            _wait_or_kill(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def _go_version(binary: Path) -> str:
    """The Go release a binary was built with, from its build information."""
    try:
        data = binary.read_bytes()
    except OSError:
        return "Go ?"
    found = re.search(rb"go1\.\d+(?:\.\d+)?", data)
    return f"Go {found.group().decode()[2:]}" if found else "Go ?"


def _wait_or_kill(proc: subprocess.Popen, timeout: float = 15) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _epmd_running() -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "epmd":
                    return True
            except OSError:
                continue
    return False


def _dpkg_version(package: str) -> str:
    try:
        output = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return re.sub(r"-.*$", "", output.split(":", 1)[-1])

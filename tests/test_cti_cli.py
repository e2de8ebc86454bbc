"""``xivo-bus users`` and ``xivo-bus cti``, and the call forms that ``serve`` starts."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest
from conftest import ChildLines, serve_argv, start_broker
from cti_support import cti_line

from xivo_bus.cti.users import UserStore


def xivo_bus(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xivo_bus", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_users_add_list_remove(tmp_path):
    where = ("--data-dir", str(tmp_path))
    added = xivo_bus(
        "users",
        "add",
        "alice",
        "--id",
        "40",
        "--name",
        "Alice Martin",
        "--password-stdin",
        *where,
        stdin="s3cret\n",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout == f"added user alice (id 40) to {tmp_path / 'users.json'}\n"
    assert xivo_bus("users", "add", "bob", "--password-stdin", *where, stdin="pw\n").returncode == 0
    assert xivo_bus("users", "list", *where).stdout == "40\talice\tAlice Martin\n41\tbob\tbob\n"
    assert UserStore(tmp_path).authenticate("alice", "s3cret").id == 40

    again = xivo_bus("users", "add", "alice", "--password-stdin", *where, stdin="x\n")
    assert again.returncode == 1
    assert again.stderr == "xivo-bus: login 'alice' already exists (id 40)\n"

    removed = xivo_bus("users", "remove", "bob", *where)
    assert removed.stdout == "removed user bob (id 41)\n"
    missing = xivo_bus("users", "remove", "bob", *where)
    assert missing.returncode == 1 and "no user 'bob'" in missing.stderr


def test_serve_starts_the_call_forms_after_its_ready_line(tmp_path):
    # start_broker has read the ready line: the call forms' line comes after it.
    broker = start_broker("--http", "127.0.0.1:0", "--data-dir", str(tmp_path), cti=True)
    try:
        lines = ChildLines(broker.proc)
        url = cti_line(lines)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        login = httpx.get(url, follow_redirects=True)
        assert login.status_code == 200 and "Log in" in login.text
        assert (tmp_path / "secret").exists()
    finally:
        assert broker.stop() == 0


def test_serve_no_cti_starts_no_web_service(tmp_path):
    broker = start_broker("--data-dir", str(tmp_path))  # conftest adds --no-cti
    broker.stop()
    assert not any("call forms" in line for line in broker.proc.stdout.read().splitlines())
    assert not (tmp_path / "secret").exists()


def test_busy_http_port_is_an_error_for_cti_and_a_warning_for_serve(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http = f"127.0.0.1:{taken.getsockname()[1]}"
        done = xivo_bus("cti", "--http", http, "--data-dir", str(tmp_path))
        assert done.returncode == 1
        assert done.stderr == f"xivo-bus: cannot listen on {http}: Address already in use\n"

        serve = subprocess.Popen(
            serve_argv("--port", "0", "--http", http, "--data-dir", str(tmp_path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert "accepting AMQP connections" in serve.stdout.readline()
            assert serve.stderr.readline() == (
                f"xivo-bus: call forms not started: cannot listen on {http}: "
                "Address already in use\n"
            )
        finally:
            serve.terminate()
            assert serve.wait(10) == 0  # the broker ran all the same, and stopped cleanly


@pytest.mark.parametrize("http", ["9527", "localhost:", "host:99999"])
def test_bad_http_option_is_a_clear_error(tmp_path, http):
    done = xivo_bus("cti", "--http", http, "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr == f"xivo-bus: {http!r} is not HOST:PORT\n"


@pytest.mark.parametrize(
    "command", [["serve"], ["cti"], ["users", "add"], ["publish"], ["listen"]], ids=" ".join
)
def test_help_texts_print(command):
    done = xivo_bus(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: xivo-bus {' '.join(command)}")

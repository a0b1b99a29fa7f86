"""Listeners: unix sockets (and --umask), inherited fds (fd://N), systemd socket activation,
--reuse-port.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import time

import pytest
from conftest import APPS, LISTENING, Server, run_wizgy
from helpers import request
from proc_util import InFlight, get_json, tracked, wait_workers, workers

APP = "proc_apps:app"


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_ports(server) -> list[int]:
    return [int(m.group(3)) for m in LISTENING.finditer(server.log()) if m.group(3)]


def test_unix_socket_serves_and_is_removed_after_sigterm(wserve, tmp_path):
    path = tmp_path / "w.sock"
    server = wserve(APP, "--threads", "2", bind=f"unix:{path}")
    assert server.unix_path == str(path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    wait_workers(server, 1)
    info = get_json(str(path))
    assert info["pid"] in workers(server)
    assert server.stop() == 0, server.log()
    assert not path.exists(), "the unix socket file was left behind"


def test_a_unix_socket_is_mode_666_by_default_whatever_the_umask(wserve, tmp_path):
    # issue 23: a proxy running as another user (nginx's www-data) must be able to connect,
    # and --umask keeps narrowing the files wizgy writes, not the socket
    path = tmp_path / "w.sock"
    pid_file = tmp_path / "wizgy.pid"
    server = wserve(
        APP, "--threads", "2", "--umask", "077", "--pid", str(pid_file), bind=f"unix:{path}"
    )
    mode = stat.S_IMODE(os.stat(path).st_mode)
    print(
        f"default socket mode {oct(mode)}; pid file {oct(stat.S_IMODE(os.stat(pid_file).st_mode))}"
    )
    assert mode == 0o666, oct(mode)
    assert stat.S_IMODE(os.stat(pid_file).st_mode) & 0o077 == 0
    assert request(str(path), "GET", "/pid").status == 200
    assert server.stop() == 0


@pytest.mark.parametrize("mode", ["600", "660", "0640"])
def test_socket_mode_sets_the_socket_mode(wserve, tmp_path, mode):
    path = tmp_path / "w.sock"
    wserve(APP, "--threads", "2", "--socket-mode", mode, bind=f"unix:{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == int(mode, 8)
    assert request(str(path), "GET", "/pid").status == 200


def test_socket_group_sets_the_socket_group_by_name_and_by_number(wserve, tmp_path):
    import grp

    # a group other than ours, so the test sees a change (root may give any group)
    other = next((g for g in grp.getgrall() if g.gr_gid != os.getgid()), None)
    if other is None or os.geteuid() != 0:
        pytest.skip("needs root and a second group")
    for value in (other.gr_name, str(other.gr_gid)):
        path = tmp_path / f"w-{value}.sock"
        server = wserve(
            APP, "--threads", "2", "--socket-mode", "660", "--socket-group", value,
            bind=f"unix:{path}",
        )  # fmt: skip
        info = os.stat(path)
        assert info.st_gid == other.gr_gid, (value, info.st_gid)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert server.stop() == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--socket-mode", "999"], ["--socket-mode", "octal"]),
        (["--socket-mode", "4755"], ["--socket-mode", "octal"]),
        (["--socket-mode", ""], ["--socket-mode"]),
        (["--socket-group", "wizgy-no-such-group"], ["--socket-group", "no group named"]),
    ],
)
def test_a_bad_socket_mode_or_group_is_one_usage_error_line(args, words):
    result = run_wizgy(*args, "--bind", "unix:/tmp/wizgy-never.sock", APP, timeout=10)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("wizgy: error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_bind_fd_serves_an_inherited_listening_socket(wserve):
    sock = listener()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    server = Server(
        [sys.executable, "-m", "wizgy", "--threads", "2", "--bind", f"fd://{fd}", APP],
        APPS,
        pass_fds=(fd,),
    )
    wserve.add(server)
    try:
        server.wait_ready()
    finally:
        sock.close()  # only wizgy holds it now
    assert listening_ports(server) == [port], server.log()
    assert server.port == port
    kids = wait_workers(server, 1)
    for _ in range(3):
        assert get_json(("127.0.0.1", port))["pid"] in kids
    assert server.stop() == 0, server.log()


def test_an_inherited_listener_stays_open_through_a_stop(wserve):
    # issue 16: wizgy closes the listeners it bound at a stop, not those it was given: their
    # owner (here: wizgy itself, the only holder) keeps queueing for the next instance
    sock = listener()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    server = Server(
        [sys.executable, "-m", "wizgy", "--threads", "2", "--bind", f"fd://{fd}",
         "--graceful-timeout", "10s", APP],
        APPS,
        pass_fds=(fd,),
    )  # fmt: skip
    wserve.add(server)
    try:
        server.wait_ready()
    finally:
        sock.close()
    wait_workers(server, 1)
    slow = InFlight(("127.0.0.1", port), "/sleep?2", timeout=10)
    server.wait_for(r"proc-sleep-start", 5)
    os.kill(server.proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    probe = socket.create_connection(("127.0.0.1", port), timeout=2)  # queued, not refused
    probe.close()
    assert slow.wait(10).status == 200
    assert server.stop() == 0, server.log()


def test_systemd_socket_activation_serves_on_fd_3_without_bind(wserve):
    sock = listener()
    port = sock.getsockname()[1]
    fd = sock.fileno()

    def to_fd_3():
        os.dup2(fd, 3)  # dup2 leaves the new descriptor inheritable

    argv = [
        "sh",
        "-c",
        'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"',
        sys.executable,
        "-m",
        "wizgy",
        "--threads",
        "2",
        APP,
    ]
    # close_fds would close fd 3 after preexec_fn; Python's own descriptors are
    # non-inheritable, so nothing else leaks into the child.
    server = Server(argv, APPS, preexec_fn=to_fd_3, close_fds=False)
    wserve.add(server)
    try:
        server.wait_ready()
    finally:
        sock.close()
    assert listening_ports(server) == [port], server.log()
    kids = wait_workers(server, 1)
    for _ in range(3):
        info = get_json(("127.0.0.1", port))
        assert info["pid"] in kids
    assert server.stop() == 0, server.log()


def test_two_instances_with_reuse_port_share_one_port_and_both_serve(wserve):
    port = free_port()
    first = wserve(APP, "--threads", "2", "--reuse-port", bind=f"127.0.0.1:{port}")
    second = wserve(APP, "--threads", "2", "--reuse-port", bind=f"127.0.0.1:{port}")
    assert first.port == second.port == port
    kids_first = wait_workers(first, 1)
    kids_second = wait_workers(second, 1)
    seen = set()
    for _ in range(60):
        seen.add(get_json(("127.0.0.1", port))["pid"])
        if seen & kids_first and seen & kids_second:
            break
    print(f"--reuse-port: pids seen {seen}; first {kids_first}, second {kids_second}")
    assert seen <= kids_first | kids_second
    assert seen & kids_first, "the first instance never answered"
    assert seen & kids_second, "the second instance never answered"


def _server_side_socket(pids: set[int], server_port: int, client_port: int) -> tuple[int, int]:
    """(pid, fd) of the server's socket of the TCP connection server_port <-> client_port."""
    inode = None
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == server_port and (
                int(remote.split(":")[1], 16) == client_port
            ):
                inode = fields[9]
    assert inode is not None, "the connection is not in /proc/net/tcp"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid, int(fd)
            except OSError:
                continue
    raise AssertionError("no server process holds the connection's socket")


def _tcp_nodelay_of(pid: int, fd: int) -> int:
    """TCP_NODELAY of another process's socket, via pidfd_getfd (Linux 5.6+)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd on x86-64 and arm64
        if dup < 0:
            pytest.skip(f"pidfd_getfd unavailable: {os.strerror(ctypes.get_errno())}")
        with socket.socket(fileno=dup) as sock:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        os.close(pidfd)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"),
    reason="reads another process's socket with pidfd_getfd",
)
def test_accepted_connections_have_tcp_nodelay(wserve):
    # Small responses written in pieces must not wait for the client's delayed ACK (Nagle).
    # On Linux the option is set once on the listener and inherited by accepted sockets.
    server = wserve(APP, "--threads", "2")
    wait_workers(server, 1)
    with socket.create_connection(server.addr, timeout=10) as client:
        client.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        pid, fd = _server_side_socket(
            {server.proc.pid, *workers(server)}, server.port, client.getsockname()[1]
        )
        assert pid in workers(server)
        assert _tcp_nodelay_of(pid, fd) == 1

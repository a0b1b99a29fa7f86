"""The ``wizgy`` command line and ``wizgy.serve()``: options, APP specs, errors, logs, signals."""

from __future__ import annotations

import errno
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import APPS, LISTENING, Server, run_wizgy
from helpers import Reader, connect, request

ACCESS_TIME = r"\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"


@pytest.fixture
def spawn():
    """Start any command that should print ``listening on``; stopped by PID at teardown."""
    started: list[Server] = []

    def start(argv: list[str], cwd: Path, env=None) -> Server:
        server = Server(argv, cwd, env)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def wait_for_file(path: Path, pattern: str, timeout: float = 10.0) -> re.Match:
    """Poll ``path`` until ``pattern`` (a regex) matches its content."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text(errors="replace")
            match = regex.search(text)
            if match:
                return match
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path} within {timeout}s; content:\n{text}")


def wait_connectable(path: Path, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait until the unix socket at ``path`` accepts connections (for servers that log nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"wizgy exited with {proc.returncode}"
        if path.exists():
            try:
                connect(str(path), timeout=1.0).close()
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"nothing accepted connections on {path} within {timeout}s")


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result, *names: str) -> str:
    """Exit 1, exactly one non-empty stderr line ``wizgy: error: ...`` naming ``names``."""
    lines = error_lines(result)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wizgy: error:"), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def hello_body(addr) -> bytes:
    resp = request(addr, "GET", "/")
    assert resp.status == 200
    return resp.body


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- --version, --help and the entry points ----------------------------------------------------


def kernel_has_openat2() -> bool:
    """openat2(AT_FDCWD, "/", {O_RDONLY, RESOLVE_BENEATH}) through ctypes: what wizgy probes."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    how = (ctypes.c_uint64 * 3)(os.O_RDONLY | os.O_CLOEXEC, 0, 0x08)  # flags, mode, resolve
    fd = libc.syscall(437, -100, b"/", ctypes.byref(how), ctypes.sizeof(how))  # x86-64, arm64
    if fd >= 0:
        os.close(fd)
        return True
    return ctypes.get_errno() not in (errno.ENOSYS, errno.EPERM)


def version_lines() -> list[str]:
    """What `wizgy --version` must print when run by this interpreter."""
    import wizgy

    info = sys.version_info
    python = f"Python {info.major}.{info.minor}.{info.micro} ({platform.python_implementation()})"
    features = ["tls", "http2", "openat2" if kernel_has_openat2() else "no-openat2"]
    return [f"wizgy {wizgy.__version__}", f"{python} at {sys.executable}",
            f"features: {', '.join(features)}"]  # fmt: skip


def test_version_prints_wizgy_the_python_it_runs_on_and_the_features():
    import wizgy

    result = run_wizgy("--version", timeout=10)
    assert result.returncode == 0, result.stderr
    assert isinstance(wizgy.__version__, str) and wizgy.__version__
    print(result.stdout)
    assert result.stdout.splitlines() == version_lines()
    assert result.stderr == ""


def test_help_lists_the_main_options_and_exits_zero():
    result = run_wizgy("--help", timeout=10)
    assert result.returncode == 0, result.stderr
    for option in ("--bind", "--threads", "--access-log"):
        assert option in result.stdout, option


def test_the_wizgy_console_script_next_to_the_interpreter_prints_the_version_and_serves(spawn):
    import wizgy

    script = Path(sys.executable).parent / "wizgy"
    assert script.exists(), script
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=10, cwd=str(APPS)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == version_lines()
    assert wizgy.__version__ in result.stdout
    server = spawn(
        [str(script), "--bind", "127.0.0.1:0", "--threads", "2", "cli_apps:hello"], cwd=APPS
    )
    assert hello_body(server.addr) == b"hello from cli_apps"


def test_python_dash_m_wizgy_prints_the_version_and_serves(serve):
    result = run_wizgy("--version", timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wizgy ")
    server = serve("cli_apps:hello", "--threads", "2")
    assert hello_body(server.addr) == b"hello from cli_apps"


def test_short_help_shows_the_common_options_and_help_shows_every_one():
    # issue 23: -h is short, --help complete, and neither sends a pip user to a file they lack
    short = run_wizgy("-h", timeout=10)
    full = run_wizgy("--help", timeout=10)
    assert short.returncode == 0 and full.returncode == 0, short.stderr + full.stderr
    for option in ("--bind", "--workers", "--threads", "--static", "--access-log"):
        assert option in short.stdout, option
    for option in ("--limit-request-line", "--graceful-timeout", "--defer-accept"):
        assert option not in short.stdout, option
        assert option in full.stdout, option
    assert len(short.stdout.splitlines()) < len(full.stdout.splitlines()) / 2
    assert "wizgy --help" in short.stdout
    assert "docs/" not in short.stdout + full.stdout


OTHER_SERVERS_SPELLINGS = {
    "--access-logformat": "--access-log",
    "--static-map": "--static PREFIX=DIR",
    "-c": "config file",
    "--worker-class": "one kind of worker",
    "--daemon": "foreground",
    "--statsd-host": "statsd",
    "--processes": "--workers",
    "--harakiri": "--request-timeout",
    "--chmod-socket": "--socket-mode",
}


@pytest.mark.parametrize("arg, hint", list(OTHER_SERVERS_SPELLINGS.items()))
def test_a_gunicorn_or_uwsgi_option_is_one_line_saying_what_wizgy_has(arg, hint):
    result = run_wizgy(arg, "x", "echo:app", timeout=10)
    lines = error_lines(result)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wizgy: error: unexpected argument '{arg}'"), lines[0]
    assert hint in lines[0], lines[0]


def test_a_near_miss_is_one_line_with_the_nearest_option():
    result = run_wizgy("--thread", "4", "echo:app", timeout=10)
    assert result.returncode == 2
    assert error_lines(result) == [
        "wizgy: error: unexpected argument '--thread'; did you mean '--threads'?"
    ]


# --- bad APP specs -----------------------------------------------------------------------------

BAD_APPS = {
    "missing-module": ("nope:app", "nope"),
    "missing-attribute": ("echo:missing", "missing"),
    "expression-not-a-name": ("echo:1+", "echo"),
    "unclosed-call": ("echo:app(", "echo"),
    "non-literal-factory-argument": ("echo:app(x)", "echo"),
}


@pytest.mark.parametrize("spec, name", list(BAD_APPS.values()), ids=list(BAD_APPS))
def test_a_bad_app_spec_is_one_error_line_naming_it_without_a_traceback(spec, name):
    result = run_wizgy("--bind", "127.0.0.1:0", "--threads", "2", spec, timeout=20)
    assert_one_line_error(result, name)


APP_RAISES = {
    "module-raises-on-import": ("cli_broken:app", "cli_broken exploded on import"),
    "bare-module-raises-on-import": ("cli_broken", "cli_broken exploded on import"),
    "a-dependency-is-missing": ("cli_missing_dep:app", "wizgy_no_such_dependency"),
    "factory-raises": ("cli_factory:boom()", "cli_factory"),
}


@pytest.mark.parametrize("spec, marker", list(APP_RAISES.values()), ids=list(APP_RAISES))
def test_an_app_that_raises_while_loading_is_one_error_line_then_its_traceback(spec, marker):
    # issue 23: shown by default, not only under --log-level debug
    result = run_wizgy("--bind", "127.0.0.1:0", "--threads", "2", spec, timeout=20)
    lines = error_lines(result)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert lines[0].startswith("wizgy: error:"), result.stderr
    assert spec.split(":")[0] in lines[0], lines[0]
    assert lines[1] == "Traceback (most recent call last):", result.stderr
    assert marker in result.stderr
    # the app's frames, not the loader's
    assert "_app.py" not in result.stderr, result.stderr
    assert sum(line.startswith("wizgy: error:") for line in lines) == 1, result.stderr


# --- bad option values -------------------------------------------------------------------------

BAD_OPTIONS = {
    "threads-not-a-number": (["--threads", "abc"], "--threads"),
    "threads-zero": (["--threads", "0"], "--threads"),
    "bind-nonsense": (["--bind", "nonsense"], "--bind"),
    "log-level-unknown": (["--log-level", "loud"], "--log-level"),
    "unknown-flag": (["--no-such-flag"], "--no-such-flag"),
}


@pytest.mark.parametrize("args, option", list(BAD_OPTIONS.values()), ids=list(BAD_OPTIONS))
def test_a_bad_option_value_is_a_usage_error_with_exit_2_naming_the_option(args, option):
    result = run_wizgy(*args, "echo:app", timeout=10)
    lines = error_lines(result)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert lines, "nothing on stderr"
    assert lines[0].startswith(("error:", "wizgy: error:")), lines[0]
    assert option in result.stderr, result.stderr
    assert len(lines) <= 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_address_already_in_use_exits_1_naming_the_address():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_wizgy("--bind", f"127.0.0.1:{port}", "--threads", "2", "echo:app", timeout=10)
    line = assert_one_line_error(result, f"127.0.0.1:{port}")
    assert "in use" in line.lower(), line


# --- APP forms, --chdir, --pythonpath --------------------------------------------------------


@pytest.mark.parametrize("spec", ["echo:app", "echo"])
def test_module_colon_name_and_a_bare_module_both_load_the_app(serve, spec):
    server = serve(spec, "--threads", "2")
    resp = request(server.addr, "GET", "/form")
    assert resp.status == 200
    assert resp.json()["environ"]["PATH_INFO"] == "/form"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("cli_factory:create()", {"args": [], "kwargs": {}}),
        ("cli_factory:create('hello', greeting=1)", {"args": ["hello"], "kwargs": {"greeting": 1}}),
    ],
    ids=["no-arguments", "literal-arguments"],
)
def test_an_app_factory_is_called_with_the_literal_arguments(serve, spec, expected):
    server = serve(spec, "--threads", "2")
    resp = request(server.addr, "GET", "/")
    assert resp.status == 200
    assert resp.json() == expected


APP_REPORTING_CWD = textwrap.dedent(
    """
    import os

    def app(environ, start_response):
        body = os.getcwd().encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)


def test_chdir_serves_an_app_that_exists_only_in_that_directory(serve, tmp_path):
    (tmp_path / "cli_chdir_only.py").write_text(APP_REPORTING_CWD)
    assert not (APPS / "cli_chdir_only.py").exists()
    server = serve("cli_chdir_only:app", "--threads", "2", "--chdir", str(tmp_path))
    assert hello_body(server.addr).decode() == os.path.realpath(tmp_path)


def test_pythonpath_makes_a_module_importable_without_changing_directory(serve, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "cli_pythonpath_only.py").write_text(APP_REPORTING_CWD)
    server = serve("cli_pythonpath_only:app", "--threads", "2", "--pythonpath", f"{first},{second}")
    assert hello_body(server.addr).decode() == os.path.realpath(APPS)


def test_pythonpath_with_a_single_directory(serve, tmp_path):
    (tmp_path / "cli_pythonpath_single.py").write_text(APP_REPORTING_CWD)
    server = serve("cli_pythonpath_single:app", "--threads", "2", "--pythonpath", str(tmp_path))
    assert hello_body(server.addr).decode() == os.path.realpath(APPS)


# --- --bind forms ----------------------------------------------------------------------------


@pytest.mark.skipif(not ipv6_available(), reason="IPv6 loopback unavailable")
def test_bind_ipv6_loopback_prints_a_bracketed_url_and_serves(serve):
    server = serve("echo:app", "--threads", "2", bind="[::1]:0")
    match = re.search(r"listening on http://\[::1\]:(\d+)", server.log())
    assert match, server.log()
    port = int(match.group(1))
    assert port > 0
    resp = request(("::1", port), "GET", "/six")
    assert resp.status == 200
    environ = resp.json()["environ"]
    assert environ["PATH_INFO"] == "/six"
    assert environ["REMOTE_ADDR"] == "::1"


def test_bind_unix_socket_prints_its_path_and_serves(serve, tmp_path):
    path = tmp_path / "w.sock"
    server = serve("echo:app", "--threads", "2", bind=f"unix:{path}")
    assert f"listening on unix:{path}" in server.log()
    assert server.unix_path == str(path)
    resp = request(str(path), "GET", "/over-unix")
    assert resp.status == 200
    assert resp.json()["environ"]["PATH_INFO"] == "/over-unix"


def test_two_tcp_binds_both_serve(serve):
    server = serve("echo:app", "--bind", "127.0.0.1:0", "--threads", "2")
    match = server.wait_for(
        r"listening on http://127\.0\.0\.1:(\d+)[\s\S]*listening on http://127\.0\.0\.1:(\d+)"
    )
    ports = {int(match.group(1)), int(match.group(2))}
    assert len(ports) == 2
    for port in ports:
        resp = request(("127.0.0.1", port), "GET", f"/port{port}")
        assert resp.status == 200
        assert resp.json()["environ"]["PATH_INFO"] == f"/port{port}"


def test_a_tcp_bind_and_a_unix_bind_both_serve(serve, tmp_path):
    path = tmp_path / "both.sock"
    server = serve("echo:app", "--bind", f"unix:{path}", "--threads", "2")
    tcp = server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)")
    server.wait_for(re.escape(f"listening on unix:{path}"))
    assert request(("127.0.0.1", int(tcp.group(1))), "GET", "/tcp").status == 200
    assert request(str(path), "GET", "/unix").status == 200


# --- access log and error log ------------------------------------------------------------------


def access_line(request_line: str, size: str, referer: str, agent: str) -> str:
    """A regex for one whole gunicorn-format access log line (``size`` is a regex)."""
    return (
        r"(?m)^127\.0\.0\.1 - - "
        + ACCESS_TIME
        + " "
        + re.escape(f'"{request_line}"')
        + " 200 "
        + size
        + " "
        + re.escape(f'"{referer}" "{agent}"')
        + "$"
    )


def test_access_log_dash_writes_one_gunicorn_format_line_per_request_to_stdout(serve):
    server = serve("echo:app", "--threads", "2", "--access-log", "-")
    first = request(server.addr, "GET", "/x?y=1", headers={"User-Agent": "test-agent"})
    # the exact format, spelled out once without the helper
    exact = (
        r"(?m)^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
        r'"GET /x\?y=1 HTTP/1\.1" 200 (\d+) "-" "test-agent"$'
    )
    match = server.wait_for(exact, timeout=5, stream="stdout")
    assert int(match.group(1)) == len(first.body)

    headers = {"User-Agent": "test-agent", "Referer": "http://ref.example/page"}
    request(server.addr, "GET", "/ref", headers=headers)
    pattern = access_line("GET /ref HTTP/1.1", r"\d+", "http://ref.example/page", "test-agent")
    server.wait_for(pattern, timeout=5, stream="stdout")

    request(server.addr, "POST", "/none", body=b"abc")
    pattern = access_line("POST /none HTTP/1.1", r"\d+", "-", "-")
    server.wait_for(pattern, timeout=5, stream="stdout")
    time.sleep(0.3)
    lines = [line for line in server.stdout().splitlines() if line.strip()]
    assert len(lines) == 3, lines


def test_access_log_to_a_file_writes_the_request_line_there(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("echo:app", "--threads", "2", "--access-log", str(log))
    request(server.addr, "GET", "/to-file", headers={"User-Agent": "test-agent"})
    wait_for_file(log, access_line("GET /to-file HTTP/1.1", r"\d+", "-", "test-agent"), 5)
    assert "/to-file" not in server.stdout()


def test_access_log_is_off_by_default(serve):
    server = serve("echo:app", "--threads", "2")
    assert request(server.addr, "GET", "/off-by-default-marker").status == 200
    time.sleep(0.5)
    assert "off-by-default-marker" not in server.stdout()
    assert "off-by-default-marker" not in server.log()


def test_error_log_file_gets_the_startup_line_and_app_tracebacks(serve, tmp_path):
    log = tmp_path / "error.log"
    server = serve("cli_apps:boom", "--threads", "2", "--error-log", str(log), wait=False)
    match = wait_for_file(log, LISTENING.pattern)
    server.host, server.port = match.group(2), int(match.group(3))
    resp = request(server.addr, "GET", "/")
    assert resp.status == 500
    wait_for_file(log, r"Traceback \(most recent call last\)[\s\S]*cli_apps boom marker", 5)
    assert "listening on" not in server.log()
    assert "Traceback" not in server.log()


def test_log_level_warning_hides_the_startup_line(serve, tmp_path):
    path = tmp_path / "quiet.sock"
    server = serve(
        "cli_apps:hello",
        "--threads",
        "2",
        "--log-level",
        "warning",
        bind=f"unix:{path}",
        wait=False,
    )
    wait_connectable(path, server.proc)
    assert hello_body(str(path)) == b"hello from cli_apps"
    time.sleep(0.2)
    assert "listening on" not in server.log()
    assert "listening on" not in server.stdout()


# --- wizgy.serve() ------------------------------------------------------------------------------

SERVE_SCRIPT = textwrap.dedent(
    """
    import wizgy

    def app(environ, start_response):
        body = ("serve() multithread=%s" % environ["wsgi.multithread"]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    wizgy.serve(app, bind="127.0.0.1:0", threads=2)
    print("serve returned", flush=True)
    """
)


def test_wizgy_serve_from_a_python_script_serves_and_returns_on_sigterm(spawn, tmp_path):
    script = tmp_path / "serve_script.py"
    script.write_text(SERVE_SCRIPT)
    server = spawn([sys.executable, str(script)], cwd=tmp_path)
    assert hello_body(server.addr) == b"serve() multithread=True"
    assert server.stop(signal.SIGTERM) == 0
    server.wait_for("serve returned", timeout=5, stream="stdout")


def test_wizgy_serve_raises_value_error_for_a_bad_option(tmp_path):
    script = tmp_path / "bad_serve.py"
    script.write_text(
        textwrap.dedent(
            """
            import wizgy

            try:
                wizgy.serve(lambda environ, start_response: [], bind="127.0.0.1:0", threads=0)
            except ValueError as exc:
                print("ValueError:", exc)
            else:
                print("no error")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=10, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ValueError:"), result.stdout + result.stderr
    assert "threads" in result.stdout


# --- signals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_the_server_with_exit_code_0(serve, sig):
    server = serve("cli_apps:hello", "--threads", "2")
    with connect(server.addr) as idle:
        # one finished request on a keep-alive connection that is left open and idle
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Reader(idle).response().status == 200
        started = time.monotonic()
        code = server.stop(sig)
    assert code == 0, server.log()
    assert time.monotonic() - started < 10
    assert "Traceback" not in server.log()


SERVE_WORKERS_SCRIPT = textwrap.dedent(
    """
    import os
    import wizgy

    SUPERVISOR = os.getpid()

    def app(environ, start_response):
        body = ("%s %s %s" % (
            environ["wsgi.multiprocess"], os.getpid() != SUPERVISOR, os.getppid() == SUPERVISOR
        )).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    wizgy.serve(app, bind="127.0.0.1:0", workers=2, threads=2)
    print("serve returned", flush=True)
    """
)


def test_wizgy_serve_with_workers_forks_them_with_the_app_object_preloaded(spawn, tmp_path):
    script = tmp_path / "serve_workers.py"
    script.write_text(SERVE_WORKERS_SCRIPT)
    server = spawn([sys.executable, str(script)], cwd=tmp_path)
    # multiprocess, served by a child process of the script that called serve()
    assert hello_body(server.addr) == b"True True True"
    assert server.stop(signal.SIGTERM) == 0
    server.wait_for("serve returned", timeout=5, stream="stdout")

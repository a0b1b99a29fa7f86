"""Settings from a TOML file and WIZGY_* variables: precedence, --print-config, bad input.

Precedence is checked through behaviour (what the app sees) and through --print-config; every
kind of bad input must stop the start with one ``wizgy: error:`` line, exit 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import APPS, Server, run_wizgy
from helpers import request


def environ_of(server: Server) -> dict:
    resp = request(server.addr, "GET", "/x")
    assert resp.status == 200, resp.body[:300]
    return resp.json()["environ"]


def clean_env(**extra: str) -> dict:
    """The test runner's environment without WIZGY_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIZGY_")}
    env.pop("WEB_CONCURRENCY", None)
    env.update(extra)
    return env


def _run(args, cwd, env):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "wizgy", *args],
        cwd=str(cwd),
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )


def printed(result) -> dict[str, tuple[str, str]]:
    """--print-config output as {key: (value, origin)}."""
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^([a-z0-9-]+) = (.*?)\s+# (.*)$", line)
        if match:
            settings[match.group(1)] = (match.group(2), match.group(3))
    return settings


# --- precedence: command line > environment > file > default --------------------------------


def test_the_file_sets_what_the_app_sees(serve, tmp_path):
    config = tmp_path / "wizgy.toml"
    config.write_text('root-path = "/from-file"\nthreads = 1\n')
    server = serve("echo:app", "--config", str(config), env=clean_env())
    environ = environ_of(server)
    assert environ["SCRIPT_NAME"] == "/from-file"
    assert environ["wsgi.multithread"] is False
    assert f"settings read from {config}" in server.log()


def test_a_variable_beats_the_file(serve, tmp_path):
    config = tmp_path / "wizgy.toml"
    config.write_text('root_path = "/from-file"\nthreads = 1\n')
    env = clean_env(WIZGY_ROOT_PATH="/from-env", WIZGY_THREADS="4")
    server = serve("echo:app", "--config", str(config), env=env)
    environ = environ_of(server)
    assert environ["SCRIPT_NAME"] == "/from-env"
    assert environ["wsgi.multithread"] is True


def test_the_command_line_beats_a_variable_and_the_file(serve, tmp_path):
    config = tmp_path / "wizgy.toml"
    config.write_text('root-path = "/from-file"\nthreads = 4\n')
    env = clean_env(WIZGY_ROOT_PATH="/from-env", WIZGY_THREADS="4")
    server = serve(
        "echo:app",
        "--config",
        str(config),
        "--root-path",
        "/from-cli",
        "--threads",
        "1",
        env=env,
    )
    environ = environ_of(server)
    assert environ["SCRIPT_NAME"] == "/from-cli"
    assert environ["wsgi.multithread"] is False


def test_wizgy_toml_in_the_start_directory_is_found_and_may_name_the_app(tmp_path):
    (tmp_path / "wizgy.toml").write_text(
        f'app = "echo:app"\nchdir = "{APPS}"\nbind = ["127.0.0.1:0"]\nroot-path = "/found"\n'
    )
    import sys

    server = Server([sys.executable, "-m", "wizgy"], tmp_path, env=clean_env())
    try:
        server.wait_ready()
        assert environ_of(server)["SCRIPT_NAME"] == "/found"
        assert "settings read from ./wizgy.toml" in server.log()
    finally:
        server.stop()


def test_web_concurrency_still_sets_the_workers_below_wizgy_workers(tmp_path):
    result = _run(["--print-config", "echo:app"], tmp_path, {"WEB_CONCURRENCY": "3"})
    assert printed(result)["workers"] == ("3", "environment WEB_CONCURRENCY")
    result = _run(
        ["--print-config", "echo:app"], tmp_path, {"WEB_CONCURRENCY": "3", "WIZGY_WORKERS": "2"}
    )
    assert printed(result)["workers"] == ("2", "environment WIZGY_WORKERS")


def test_print_config_shows_each_setting_with_its_origin_and_is_a_config_file(tmp_path):
    config = tmp_path / "deploy.toml"
    config.write_text('# deploy\nthreads = 3\nbind = ["127.0.0.1:7001", "127.0.0.1:7002"]\n')
    result = _run(
        ["--config", str(config), "--print-config", "--max-requests", "9", "echo:app"],
        tmp_path,
        {"WIZGY_WORKERS": "2", "WIZGY_PRELOAD": "true", "WIZGY_KEYFILE_PASSWORD": "s3cret"},
    )
    settings = printed(result)
    assert settings["threads"] == ("3", f"file {config}:2")
    assert settings["bind"] == ('["127.0.0.1:7001", "127.0.0.1:7002"]', f"file {config}:3")
    assert settings["workers"] == ("2", "environment WIZGY_WORKERS")
    assert settings["preload"] == ("true", "environment WIZGY_PRELOAD")
    assert settings["max-requests"] == ("9", "command line")
    assert settings["app"] == ('"echo:app"', "command line")
    assert settings["backlog"] == ("2048", "default")
    assert settings["log-level"] == ('"info"', "default")
    assert "s3cret" not in result.stdout, "a secret is never printed"
    # the output, fed back as a file, gives the same settings
    again = tmp_path / "again.toml"
    again.write_text(result.stdout.replace('"(hidden)"', '"x"'))
    second = printed(_run(["--config", str(again), "--print-config"], tmp_path, {}))
    for key in ("threads", "bind", "workers", "preload", "max-requests", "app", "backlog"):
        assert second[key][0] == settings[key][0], key


def test_help_names_each_options_variable():
    result = run_wizgy("--help", timeout=10)
    assert result.returncode == 0
    for variable in ("WIZGY_BIND", "WIZGY_THREADS", "WIZGY_MAX_REQUESTS", "WIZGY_STATIC"):
        assert f"[env: {variable}=" in result.stdout, variable


def test_the_example_config_file_is_valid(tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "config" / "wizgy.toml"
    result = _run(["--config", str(example), "--print-config"], tmp_path, {})
    assert not (example.parent.parent / "wizgy.toml").exists(), "examples/ must stay file-free"
    settings = printed(result)
    assert settings["app"][1] == f"file {example}:{_line_of(example, 'app =')}"


def _line_of(path: Path, start: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith(start):
            return number
    raise AssertionError(f"{start!r} not in {path}")


# --- bad input: one line, exit 2, naming what and where -------------------------------------

# (file content, fragments the error line must hold). The line number is checked too where the
# case has one (``{line}`` below is the line of the first key in the file that is at fault).
BAD_FILES = {
    "unknown-key-with-suggestion": (
        "threads = 2\nthread = 4\n",
        ['key "thread"', "did you mean threads", ":2:"],
    ),
    "unknown-key-without-suggestion": ("zzzzqqq = 1\n", ['key "zzzzqqq"', "no such setting"]),
    "key-with-control-bytes": ('"thr\\u0000eads" = 1\n', ["\\0", "no such setting"]),
    "very-long-key": ("k" * 20000 + " = 1\n", ["no such setting", "…"]),
    "wrong-type-array-for-a-number": ("threads = [1, 2]\n", ['key "threads"', "an array"]),
    "wrong-type-string-for-a-switch": ('preload = "yes"\n', ['key "preload"', "true or false"]),
    "wrong-type-boolean-list-item": (
        'bind = ["127.0.0.1:1", true]\n',
        ['key "bind"', "a boolean"],
    ),
    "wrong-type-date": ("timeout = 1979-05-27\n", ['key "timeout"', "a date"]),
    "wrong-type-table": ("[threads]\nx = 1\n", ['key "threads"', "a table"]),
    "wrong-type-nested-array": ('bind = [["127.0.0.1:1"]]\n', ['key "bind"', "an array"]),
    "wrong-type-app": ("app = 3\n", ['key "app"', "expected a string"]),
    "bad-value-zero-threads": ("threads = 0\n", ['key "threads"', "0"]),
    "bad-value-negative": ("threads = -1\n", ['key "threads"', "-1"]),
    "bad-value-infinite": ("threads = inf\n", ['key "threads"']),
    "bad-value-huge-integer": ("threads = 99999999999999999999999\n", [":1:"]),
    "bad-value-size-unit": ('max-request-body = "1ZB"\n', ['key "max-request-body"', "ZB"]),
    "bad-value-bind": ('bind = ["nonsense"]\n', ['key "bind"', "nonsense"]),
    "bad-value-newline-in-bind": ('bind = ["127.0.0.1:1\\n"]\n', ['key "bind"']),
    "bad-value-root-path": ('root-path = "no-slash"\n', ['key "root-path"', "'/'"]),
    "bad-value-log-level": ('log-level = "loud"\n', ['key "log-level"', "loud"]),
    "both-spellings": (
        "max-requests = 1\nmax_requests = 2\n",
        ['"max_requests"', "same option", '"max-requests"'],
    ),
    "duplicate-key": ("threads = 1\nthreads = 2\n", [":2:"]),
    "syntax-error": ("threads = 2\nworkers =\n", [":2:"]),
    "unterminated-string": ('threads = 2\nbind = "127.0.0.1\n', [":2:"]),
    "command-line-only-option": ('config = "other.toml"\n', ['key "config"', "command-line"]),
    "help-is-not-a-setting": ("help = true\n", ['key "help"', "command-line"]),
    "nul-byte": ("threads = 2\x00\n", [":1:"]),
    "deep-nesting": ("a = " + "[" * 5000 + "]" * 5000 + "\n", [":1:"]),
}


def assert_usage_error(result, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    assert line.startswith("wizgy: error: "), line
    assert len(line) < 400, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert "Traceback" not in result.stderr + result.stdout
    assert "panicked" not in result.stderr
    assert not any(ord(c) < 32 or ord(c) == 127 for c in line), "control bytes are escaped"
    return line


@pytest.mark.parametrize("content, fragments", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_a_bad_config_file_is_one_error_line_naming_key_file_and_line(tmp_path, content, fragments):
    path = tmp_path / "bad.toml"
    path.write_bytes(content.encode("utf-8", "surrogatepass"))
    result = _run(["--config", str(path), "echo:app"], tmp_path, {})
    line = assert_usage_error(result, str(path), *fragments)
    assert re.search(re.escape(str(path)) + r":\d+:", line), line


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'threads = 2\nroot-path = "/caf\xe9"\n')
    assert_usage_error(_run(["--config", str(path), "a:app"], tmp_path, {}), str(path), "line 2")


def test_a_huge_config_file_is_refused_without_being_read_whole(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text("# padding\n" * 300_000)
    assert_usage_error(_run(["--config", str(path), "a:app"], tmp_path, {}), str(path), "larger")


@pytest.mark.parametrize("kind", ["missing", "directory", "dev-zero", "fifo"])
def test_a_config_path_that_is_no_readable_file_is_one_line(tmp_path, kind):
    path = {
        "missing": tmp_path / "missing.toml",
        "directory": tmp_path,
        "dev-zero": Path("/dev/zero"),
        "fifo": tmp_path / "fifo",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    result = _run(["--config", str(path), "a:app"], tmp_path, {})
    assert_usage_error(result, str(path), "cannot be read")


def test_wizgy_config_names_the_file_too(tmp_path):
    result = _run(["a:app"], tmp_path, {"WIZGY_CONFIG": str(tmp_path / "nope.toml")})
    assert_usage_error(result, "nope.toml", "cannot be read")


BAD_VARIABLES = {
    "unknown-with-suggestion": (
        {"WIZGY_THREDS": "4"},
        ["WIZGY_THREDS", "did you mean WIZGY_THREADS"],
    ),
    "unknown-without-suggestion": ({"WIZGY_ZZZQQQ": "1"}, ["WIZGY_ZZZQQQ", "no such"]),
    "bad-number": ({"WIZGY_THREADS": "lots"}, ["WIZGY_THREADS", "lots"]),
    "bad-switch": ({"WIZGY_PRELOAD": "maybe"}, ["WIZGY_PRELOAD", "true or false"]),
    "bad-list-item": ({"WIZGY_BIND": "127.0.0.1:1,nonsense"}, ["WIZGY_BIND", "nonsense"]),
    "bad-web-concurrency": ({"WEB_CONCURRENCY": "0"}, ["WEB_CONCURRENCY"]),
    "bad-duration": ({"WIZGY_TIMEOUT": "5 parsecs"}, ["WIZGY_TIMEOUT", "parsecs"]),
    "control-bytes": ({"WIZGY_ROOT_PATH": "x\x1b[31m"}, ["WIZGY_ROOT_PATH"]),
}


@pytest.mark.parametrize("env, fragments", list(BAD_VARIABLES.values()), ids=list(BAD_VARIABLES))
def test_a_bad_variable_is_one_error_line_naming_it(tmp_path, env, fragments):
    assert_usage_error(_run(["a:app"], tmp_path, env), *fragments)


def test_a_variable_that_is_not_utf8_is_refused(tmp_path):
    import subprocess
    import sys

    env = {os.fsencode(k): os.fsencode(v) for k, v in clean_env().items()}
    env[b"WIZGY_ROOT_PATH"] = b"/caf\xe9"
    result = subprocess.run(
        [sys.executable, "-m", "wizgy", "a:app"],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert_usage_error(result, "WIZGY_ROOT_PATH", "UTF-8")


def test_a_bad_setting_overridden_on_the_command_line_is_still_an_error(tmp_path):
    # never silently ignored: the file is wrong even if the command line wins today
    path = tmp_path / "w.toml"
    path.write_text('threads = "many"\n')
    result = _run(["--config", str(path), "--threads", "2", "a:app"], tmp_path, {})
    assert_usage_error(result, str(path), 'key "threads"')

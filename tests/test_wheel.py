"""The wheels `make wheel` built (target/wheels) install and serve without a Rust toolchain.

Each wheel goes into a fresh virtualenv of its own CPython (3.9 takes the cp39 wheel, 3.13 the
abi3 one, the floor and ceiling of the support claim) with nothing but that venv, /usr/bin and
/bin on PATH: no cargo, no rustc. There `wizgy --version` names the venv's interpreter and the
wheel's wizgy serves a request. auditwheel confirms the manylinux_2_17 tag, the extension is
stripped, and the sdist carries what `pip install` needs to build it.

Building the wheels is a full release compile, so the suite does not do it: CI runs `make wheel`
before `make test` and there (CI=true) a missing or stale wheel fails this test; elsewhere it
is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import APPS, Server
from helpers import request

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "target" / "wheels"
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
IN_CI = os.environ.get("CI", "").lower() == "true"
CLEAN_PATH = "/usr/bin:/bin"
TAG = "manylinux_2_17_x86_64"


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: `make wheel` runs before the tests)")
    pytest.skip(reason)


def newest_source() -> float:
    files = [*ROOT.glob("crates/*/src/**/*.rs"), *ROOT.glob("python/wizgy/*.py")]
    files += [ROOT / "Cargo.toml", ROOT / "Cargo.lock", ROOT / "pyproject.toml"]
    return max(f.stat().st_mtime for f in files)


def built(pattern: str) -> Path:
    found = sorted(WHEELS.glob(pattern))
    if not found:
        unavailable(f"no {pattern} in target/wheels: run `make wheel`")
    assert len(found) == 1, found
    if found[0].stat().st_mtime < newest_source():
        unavailable(f"{found[0].name} is older than the sources: run `make wheel`")
    return found[0]


def interpreter(version: str) -> Path:
    found = sorted(PYENV.glob(f"{version}.*/bin/python"), key=lambda p: p.parent.parent.name)
    if not found:
        unavailable(f"CPython {version} is not installed under pyenv")
    return found[-1]


def clean_env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUSTUP", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{venv / 'bin'}:{CLEAN_PATH}"
    return env


@pytest.mark.parametrize(
    ("version", "pattern"),
    [("3.9", "wizgy-*-cp39-cp39-*.whl"), ("3.13", "wizgy-*-cp310-abi3-*.whl")],
    ids=["cp39", "abi3-on-3.13"],
)
def test_the_wheel_installs_and_serves_in_a_fresh_venv_without_a_rust_toolchain(
    tmp_path, version, pattern
):
    wheel = built(pattern)
    python = interpreter(version)
    venv = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, timeout=120)
    env = clean_env(venv)
    for tool in ("cargo", "rustc"):
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is on the clean PATH"
    # the pip the venv was made with (ensurepip's, offline): what a user's `pip install` does
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps",
         "--disable-pip-version-check", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr

    result = subprocess.run(
        [str(venv / "bin" / "wizgy"), "--version"],
        capture_output=True, text=True, timeout=30, env=env, cwd=str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    print(f"{wheel.name} ({wheel.stat().st_size / 2**20:.2f} MiB) on {version}: {lines}")
    assert lines[0] == f"wizgy {wheel.name.split('-')[1]}"
    assert lines[1].startswith(f"Python {version}.") and lines[1].endswith(
        f" at {venv / 'bin' / 'python'}"
    ), lines[1]
    assert lines[2].startswith("features: tls"), lines[2]

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import wizgy._native as n; print(n.__file__)"],
        capture_output=True, text=True, timeout=30, env=env, cwd=str(APPS),
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr

    server = Server(
        [str(venv / "bin" / "wizgy"), "--bind", "127.0.0.1:0", "--threads", "2",
         "cli_apps:hello"],
        APPS, env=env,
    )  # fmt: skip
    try:
        server.wait_ready()
        resp = request(server.addr, "GET", "/", timeout=10)
        assert resp.status == 200, (resp.status, server.log())
        assert resp.body == b"hello from cli_apps"
    finally:
        assert server.stop() == 0, server.log()


def elf_section_names(data: bytes) -> list[str]:
    """The section names of a 64-bit little-endian ELF file (the header's section table)."""
    assert data[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strings_at = headers[shstrndx][4]
    names = []
    for header in headers:
        start = strings_at + header[0]
        names.append(data[start : data.index(b"\0", start)].decode())
    return names


@pytest.mark.parametrize("pattern", ["wizgy-*-cp39-cp39-*.whl", "wizgy-*-cp310-abi3-*.whl"])
def test_auditwheel_confirms_the_manylinux_2_17_tag_and_the_extension_is_stripped(pattern):
    wheel = built(pattern)
    assert f"{TAG}.whl" in wheel.name, wheel.name
    # make wheel installs auditwheel into .venv; test-versions runs this file from other venvs
    found = [d / "auditwheel" for d in (Path(sys.executable).parent, ROOT / ".venv" / "bin")]
    auditwheel = next((tool for tool in found if tool.exists()), None)
    if auditwheel is None:
        unavailable("auditwheel is not installed in .venv: run `make wheel`")
    shown = subprocess.run(
        [str(auditwheel), "show", str(wheel)], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert f'is consistent with the following platform tag: "{TAG}"' in text, shown.stdout
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".so")]
        sections = elf_section_names(archive.read(name))
    assert ".text" in sections, sections
    assert not [s for s in sections if s.startswith(".debug")], sections
    assert ".symtab" not in sections, "symbols were not stripped"
    assert wheel.stat().st_size < 8 * 2**20, wheel.stat().st_size


def test_the_sdist_carries_the_workspace_pip_builds_from():
    found = sorted(WHEELS.glob("wizgy-*.tar.gz"))
    if not found:
        unavailable("no sdist in target/wheels: run `make wheel`")
    with tarfile.open(found[-1]) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for needed in ("pyproject.toml", "Cargo.toml", "Cargo.lock", "crates/wizgy-core/src/lib.rs",
                   "crates/wizgy-python/src/lib.rs", "python/wizgy/__init__.py"):  # fmt: skip
        assert needed in names, (needed, sorted(names)[:40])

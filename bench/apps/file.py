"""file: a 10 MiB file through wsgi.file_wrapper (sendfile where the server has it).

Servers without wsgi.file_wrapper get the PEP 3333 fallback: the file read in 64 KiB blocks.
The file is made once at import (in bench/results/tmp, outside git).
"""

import os

SIZE = 10 << 20
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results", "tmp", "10mib.bin")
PATH = os.path.normpath(PATH)

if not os.path.exists(PATH) or os.path.getsize(PATH) != SIZE:
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    tmp = f"{PATH}.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(b"z" * SIZE)
    os.replace(tmp, PATH)


def _blocks(f, size=65536):
    try:
        while True:
            block = f.read(size)
            if not block:
                return
            yield block
    finally:
        f.close()


def app(environ, start_response):
    f = open(PATH, "rb")
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(SIZE))]
    )
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(f, 65536)
    return _blocks(f)

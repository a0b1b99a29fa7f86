"""Start a server that has no command line or process manager of its own.

    python serve.py SERVER MODULE:APP PORT WORKERS THREADS

SERVER is bjoern, fastwsgi, meinheld or pyruvate. Always binds 127.0.0.1. bjoern and meinheld
fork WORKERS-1 extra processes after listening (they share the socket); fastwsgi forks its own
workers; pyruvate runs THREADS worker threads in one process (it has no multi-process mode).
The benchmark stops the whole process tree by PID.
"""

import importlib
import os
import sys

HOST = "127.0.0.1"


def load(spec):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "application")


def fork_workers(workers):
    """Fork workers-1 children after the socket is bound; return in every process."""
    for _ in range(workers - 1):
        if os.fork() == 0:
            return


def main():
    server, spec, port, workers, threads = sys.argv[1:6]
    port, workers, threads = int(port), int(workers), int(threads)
    sys.path.insert(0, os.getcwd())
    app = load(spec)
    if server == "bjoern":
        import bjoern

        bjoern.listen(app, HOST, port)
        fork_workers(workers)
        bjoern.run()
    elif server == "meinheld":
        from meinheld import server as mserver

        mserver.set_access_logger(None)  # no server logs access by default here
        mserver.listen((HOST, port))
        fork_workers(workers)
        mserver.run(app)
    elif server == "fastwsgi":
        import fastwsgi

        fastwsgi.run(app, host=HOST, port=port, workers=workers)
    elif server == "pyruvate":
        import pyruvate

        if workers != 1:
            sys.exit("pyruvate has no multi-process mode")
        pyruvate.serve(app, f"{HOST}:{port}", threads)
    else:
        sys.exit(f"unknown server {server}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass

"""Hold N idle keep-alive connections open against a server while wrk runs (the idle workload).

    python idle_holder.py PORT N

Raises RLIMIT_NOFILE, opens N connections to 127.0.0.1:PORT (a few hundred at a time), sends one
GET on each and reads its response, so every connection is an idle keep-alive connection in the
server. Prints one line `READY {json}` when done (bounded: 20 s), then holds the connections
without sending anything until SIGTERM/SIGINT or stdin closes, and prints `DONE {json}` with how
many were still open (the server may close idle connections: its keep-alive timeout or a limit).
"""

import asyncio
import json
import resource
import signal
import sys
import time

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, n)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def open_one(port, sem):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
        except (OSError, asyncio.TimeoutError):
            return None, "connect"
        try:
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            return (reader, writer), None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return None, "request"


async def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    raise_nofile(n + 100)
    sem = asyncio.Semaphore(200)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(open_one(port, sem)) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=20)
    for t in pending:
        t.cancel()
    conns, failures = [], {"connect": 0, "request": 0, "timeout": len(pending)}
    for t in done:
        conn, err = t.result()
        if conn:
            conns.append(conn)
        else:
            failures[err] += 1
    ready = {
        "opened": len(conns),
        "wanted": n,
        "failures": failures,
        "seconds": round(time.monotonic() - t0, 2),
    }
    print("READY " + json.dumps(ready), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)
    try:
        await asyncio.wait_for(stop.wait(), 600)
    except asyncio.TimeoutError:
        pass
    # The event loop has seen every close while it waited: a connection the server closed is
    # at EOF (or carries the reset as its exception).
    await asyncio.sleep(0.2)
    still_open = sum(1 for r, _ in conns if not r.at_eof() and r.exception() is None)
    for _, writer in conns:
        writer.close()
    print("DONE " + json.dumps({"still_open": still_open, **ready}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

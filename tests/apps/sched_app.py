"""Reports the scheduling policy of the app thread and of a process the app starts."""

import json
import os
import subprocess
import sys

CHILD = "import os; print(os.sched_getscheduler(0))"


def app(environ, start_response):
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    )
    body = json.dumps(
        {"thread": os.sched_getscheduler(0), "child": int(child.stdout.strip())}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

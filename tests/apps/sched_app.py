"""Reports the scheduling policy of the app thread and of a process the app starts."""

import ctypes
import json
import os
import subprocess
import sys

CHILD = "import os; print(os.sched_getscheduler(0))"


def _timer_slack():
    """This thread's timer slack in ns (prctl PR_GET_TIMERSLACK)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(30, 0, 0, 0, 0)  # PR_GET_TIMERSLACK


def _threads():
    """{thread name: scheduling policy} for every thread of this process."""
    policies = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            policies[name] = os.sched_getscheduler(int(tid))
        except OSError:
            pass  # the thread ended meanwhile
    return policies


def app(environ, start_response):
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
    )
    body = json.dumps(
        {
            "thread": os.sched_getscheduler(0),
            "timer_slack_ns": _timer_slack(),
            "child": int(child.stdout.strip()),
            "threads": _threads(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

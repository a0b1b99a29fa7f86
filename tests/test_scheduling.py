"""Workers run their I/O thread and app threads under SCHED_BATCH (no wake-up preemption
between the I/O thread and the app threads) with 1 µs timer slack. Processes the app starts
inherit the policy: Linux's SCHED_RESET_ON_FORK only resets real-time policies, so wizgy does
not pretend otherwise (ARCHITECTURE.md)."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import request

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux policy")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_app_threads_run_under_sched_batch_and_their_children_inherit_it(serve, workers):
    server = serve("sched_app:app", "--workers", workers)
    report = request(server.addr, "GET", "/").json()
    assert report["thread"] == os.SCHED_BATCH, report
    assert report["child"] == os.SCHED_BATCH, report
    # Timers of the app thread end within 1 µs of when asked, not Linux's default 50 µs.
    assert report["timer_slack_ns"] == 1000, report
    # The I/O thread too: it and the app threads take turns in batches.
    assert report["threads"].get("wizgy-io") == os.SCHED_BATCH, report["threads"]

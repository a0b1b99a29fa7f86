"""Write docs/benchmarks.md and docs/benchmarks.png from bench/results/results.json.

    bench/.venv/bin/python bench/report.py [results.json]

Every number comes from the raw JSON (medians over the rounds), so the report can be rebuilt
without re-running anything.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
DOCS = os.path.join(ROOT, "docs")
METRICS = (
    "rps",
    "rps_per_core",
    "cpu_util",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "peak_rss_mib",
    "mib_per_s",
    "machine_us_per_request",
    "peak_process_rss_mib",
)
NOISY = 0.25  # median CPU used by other programs during a row's runs, in cores, that flags it


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(data):
    """(workload, workers, server) -> medians of the successful rounds, plus failures."""
    groups = {}
    for r in data["runs"]:
        groups.setdefault((r["workload"], r["workers"], r["server"]), []).append(r)
    agg = {}
    for key, runs in groups.items():
        ok = [r for r in runs if "rps" in r and "error" not in r and r["requests"] > 0]
        for r in runs:
            if "rps" in r and "error" not in r and r["requests"] == 0:
                kinds = ", ".join(f"{k} {n:,}" for k, n in r["error_kinds"].items() if n)
                r["error"] = f"no response completed ({kinds or 'no errors reported'})"
        a = {
            "rounds": len(runs),
            "ok": len(ok),
            "notes": runs[0].get("notes", ""),
            "failures": [r.get("error", "") for r in runs if "error" in r],
        }
        for r in ok:
            if r.get("machine_us_per_request") is None and r.get("cpu_seconds") is not None:
                # Runs recorded before the field existed: server + wrk + other CPU (the same
                # /proc/stat busy time, split; "other" was clamped at 0).
                busy = r["cpu_seconds"] + (r["wrk_cpu_util"] + r["other_cpu_util"]) * r["seconds"]
                r["machine_us_per_request"] = round(busy / r["requests"] * 1e6, 2)
        for m in METRICS:
            a[m] = med([r.get(m) for r in ok])
        kinds = {}
        for r in ok:
            for k, n in (r.get("error_kinds") or {}).items():
                kinds[k] = kinds.get(k, 0) + n
        a["error_kinds"] = {k: n for k, n in kinds.items() if n}
        a["other_cpu_util"] = med([r.get("other_cpu_util") for r in ok])
        held = [r["idle_done"]["still_open"] for r in ok if "idle_done" in r]
        opened = [r["idle_ready"]["opened"] for r in ok if "idle_ready" in r]
        if opened:
            a["idle_opened"] = med(opened)
            a["idle_held"] = med(held) if held else None
        agg[key] = a
    return agg


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:,.0f}"


def fmt_ratio(a, b):
    if a is None or not b:
        return "–"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def fmt_mib(v):
    return "–" if v is None else f"{v:.1f}"


def peers_of(data):
    return [s for s in data["config"]["servers"] if s not in ("wizgy", "ceiling")]


def best(agg, wl, workers, servers, metric, highest=True):
    """The best peer by metric; for p99 and machine CPU (lowest wins) only among servers
    without errors (a response cut short is cheap)."""
    cands = [
        (agg[(wl, workers, s)][metric], s)
        for s in servers
        if (wl, workers, s) in agg
        and agg[(wl, workers, s)][metric] is not None
        and agg[(wl, workers, s)]["ok"]
        and (
            metric not in ("p99_ms", "machine_us_per_request")
            or not agg[(wl, workers, s)]["errors"]
        )
    ]
    if not cands:
        return None, None
    return max(cands) if highest else min(cands)


# What was found by hand about a failure the table shows (checked outside the benchmark).
KNOWN = {
    ("meinheld", "file"): "meinheld 1.0.2's `wsgi.file_wrapper` closes the connection part-way "
    "through the 10 MiB body (curl received 6,745,915 of 10,485,760 bytes), so every response "
    "is cut short",
    ("waitress", "idle"): "waitress's event loop uses `select()`, which cannot watch a descriptor "
    "above 1023: with 5,000 connections it raises and exits",
}


def short_failure(text):
    """One line: the driver's reason, plus the last line of the server's log if it has one."""
    head, sep, tail = text.partition("; log tail: ")
    lines = [x.strip() for x in tail.splitlines() if x.strip()]
    out = head + (f" — its log ends: `{lines[-1][:160]}`" if sep and lines else "")
    return out.replace("|", "\\|")


def vs(z, a, metric, s):
    """wizgy's value over this server's, blank on wizgy's own row."""
    return "" if s == "wizgy" or not z else fmt_ratio(z[metric], a[metric])


def label(data, s):
    return data["servers"][s]["label"]


# ---------------------------------------------------------------------------------------------


def write_markdown(data, agg, png_name, md_name="benchmarks.md"):
    cfg, m, v = data["config"], data["machine"], data["versions"]
    peers = peers_of(data)
    L = []
    w = L.append
    w("# wizgy benchmarks: side by side with every WSGI peer")
    w("")
    w(
        f"Generated {data['generated']} by `bench/report.py` from `bench/results/results.json`, "
        f"the raw results of one run of"
    )
    w("")
    w(f"    {data['command']}")
    w("")
    src = data.get("wizgy_source", {})
    w(
        f"wizgy built from this checkout at `{src.get('commit', '?')[:12]}`"
        f"{' (with uncommitted source changes)' if src.get('dirty_source') else ''}; "
        f"{cfg['rounds']} rounds × {cfg['duration_s']} s per run; the run took "
        f"{data['bench_seconds'] // 60} min {data['bench_seconds'] % 60} s after "
        f"{data.get('install_seconds', 0)} s of install and build."
    )
    w("")
    w(f"![req/s per server core, req/s and peak RSS per workload and server]({png_name})")
    w("")

    # --- headline
    w("## Headline: wizgy against the best peer (1 worker unless noted)")
    w("")
    w(
        "Best peer = the highest value among the peers in that workload (the Rust ceiling is not a "
        "peer). A ratio above 1.00× means wizgy is ahead."
    )
    w("")
    w(
        "| workload | wizgy req/s | best peer req/s | wizgy ÷ best | wizgy req/s per core | "
        "best peer per core | wizgy ÷ best | wizgy p99 ms | best peer p99 ms | "
        "wizgy peak RSS MiB | smallest peer RSS MiB |"
    )
    w("|---|---:|---|---:|---:|---|---:|---:|---|---:|---|")
    configs = [(wl, wk) for wl in cfg["workloads"] for wk in data["workloads"][wl]["workers"]]
    for wl, wk in configs:
        z = agg.get((wl, wk, "wizgy"))
        if not z:
            continue
        br, bs = best(agg, wl, wk, peers, "rps")
        bc, bcs = best(agg, wl, wk, peers, "rps_per_core")
        bp, bps = best(agg, wl, wk, peers, "p99_ms", highest=False)
        bm, bms = best(agg, wl, wk, peers, "peak_rss_mib", highest=False)
        name = wl if wk == 1 else f"{wl}, {wk} workers"
        w(
            f"| {name} | {fmt_int(z['rps'])} | {fmt_int(br)} {label(data, bs) if bs else ''} | "
            f"{fmt_ratio(z['rps'], br)} | {fmt_int(z['rps_per_core'])} | "
            f"{fmt_int(bc)} {label(data, bcs) if bcs else ''} | "
            f"{fmt_ratio(z['rps_per_core'], bc)} | "
            f"{fmt_ms(z['p99_ms'])} | {fmt_ms(bp)} {label(data, bps) if bps else ''} | "
            f"{fmt_mib(z['peak_rss_mib'])} | {fmt_mib(bm)} {label(data, bms) if bms else ''} |"
        )
    w("")

    write_rounds(w, data, agg, peers, configs)

    write_machine(w, data, agg, peers, configs)

    write_targets(w, data, agg, peers)

    # --- limits
    w("## The limits: Python alone, Rust alone")
    w("")
    c = agg.get(("hello", 1, "ceiling"))
    z = agg.get(("hello", 1, "wizgy"))
    if c and z and c["rps"]:
        w(
            f"**Rust-only ceiling** (`bench/ceiling`: hyper 1.x on a current-thread tokio runtime, "
            f"no Python, same wrk settings): {fmt_int(c['rps'])} req/s, "
            f"{fmt_int(c['rps_per_core'])} req/s per server core at "
            f"{c['cpu_util'] * 100:.0f} % CPU on hello. wizgy reaches "
            f"**{z['rps'] / c['rps']:.2f}×** the ceiling's req/s and "
            f"**{fmt_ratio(z['rps_per_core'], c['rps_per_core'])}** its req/s per core "
            f"({fmt_int(z['rps'])} req/s, {fmt_int(z['rps_per_core'])} per core at "
            f"{z['cpu_util'] * 100:.0f} % CPU). When the ceiling's CPU is well under 100 %, wrk "
            f"on its one core is the bottleneck, not the server."
        )
        for wl in ("close", "idle"):
            c2, z2 = agg.get((wl, 1, "ceiling")), agg.get((wl, 1, "wizgy"))
            if c2 and z2 and c2["rps"] and z2["rps"]:
                w(
                    f"On `{wl}` the ceiling does {fmt_int(c2['rps'])} req/s "
                    f"({fmt_int(c2['rps_per_core'])} per core); wizgy "
                    f"{z2['rps'] / c2['rps']:.2f}× of that "
                    f"({fmt_ratio(z2['rps_per_core'], c2['rps_per_core'])} per core)."
                )
        w("")
    w(
        "**Python-only cost** (`bench/pycost.py`): each app called in a loop on core 0 with a "
        "prebuilt environ (copied per call, a fresh `wsgi.input` for post), a no-op "
        "`start_response`, the iterable consumed and closed; `wsgi.file_wrapper` does not read the "
        "file (as with sendfile). The implied maximum is what one core could do if the server "
        "cost nothing. *wizgy ÷ limit* = wizgy's req/s per server core ÷ that maximum."
    )
    w("")
    w(
        "| app | µs per call | implied max req/s on one core | wizgy req/s per core | "
        "wizgy ÷ limit | wizgy's own cost per request µs |"
    )
    w("|---|---:|---:|---:|---:|---:|")
    for wl in cfg["workloads"]:
        pc = data["pycost"].get(wl, {})
        z = agg.get((wl, 1, "wizgy"))
        us = pc.get("us_per_call")
        if us is None:
            w(f"| {wl} | failed: {pc.get('error', '?')} | | | | |")
            continue
        zc = z["rps_per_core"] if z else None
        own = (1e6 / zc - us) if zc else None
        note = " (sleeps: not CPU)" if wl == "sleep" else ""
        w(
            f"| {wl} (`{pc['app']}`) | {us:,.1f}{note} | {fmt_int(pc['max_rps_one_core'])} | "
            f"{fmt_int(zc)} | {fmt_ratio(zc, pc['max_rps_one_core']) if wl != 'sleep' else '–'} | "
            f"{'–' if own is None or wl == 'sleep' else f'{own:,.1f}'} |"
        )
    w("")

    # --- per workload tables
    w("## Results per workload")
    w("")
    w(
        "Medians over the rounds. *per core* = requests ÷ server CPU seconds (user + system of "
        "every process of the server, from /proc), meaningful even when wrk is the bottleneck. "
        "*CPU* = server CPU seconds ÷ wall seconds (100 % = the one pinned core). *errors* = "
        "socket errors (connect, read, write, timeout) + responses with status ≥ 400, per run. "
        "*RSS* = peak of the summed VmRSS of the server's processes, sampled every 100 ms from "
        "start to stop. *wizgy ÷* columns: above 1.00× wizgy is ahead of that server."
    )
    w("")
    servers = cfg["servers"]
    for wl, wk in configs:
        wd = data["workloads"][wl]
        w(f"### {wl}{'' if wk == 1 else f' — {wk} workers'}")
        w("")
        w(
            f"{wd['desc']} (`bench/apps/{wd['app'].split(':')[0]}.py`)."
            + (f" wrk: `{_wrk_of(data, wl, wk)}`." if _wrk_of(data, wl, wk) else "")
        )
        w("")
        idle = wl == "idle"
        w(
            "| server | config | req/s | per core | CPU | p50 ms | p99 ms | p99.9 ms | errors | "
            "peak RSS MiB | wizgy ÷ req/s | wizgy ÷ per core |"
            + (" idle conns opened / still open |" if idle else "")
        )
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if idle else ""))
        z = agg.get((wl, wk, "wizgy"))
        rows = [s for s in servers if (wl, wk, s) in agg]
        rows.sort(key=lambda s: -(agg[(wl, wk, s)]["rps_per_core"] or 0))
        for s in rows:
            a = agg[(wl, wk, s)]
            name = f"**{label(data, s)}**" if s == "wizgy" else label(data, s)
            if (a["other_cpu_util"] or 0) > NOISY:
                name += " †"
            if not a["ok"]:
                w(
                    f"| {name} | {a['notes']} | failed | | | | | | | {fmt_mib(a['peak_rss_mib'])} "
                    f"| | |" + (" |" if idle else "")
                )
                continue
            cpu = "–" if a["cpu_util"] is None else f"{a['cpu_util'] * 100:.0f} %"
            extra = ""
            if idle:
                extra = f" {fmt_int(a.get('idle_opened'))} / {fmt_int(a.get('idle_held'))} |"
            w(
                f"| {name} | {a['notes']} | {fmt_int(a['rps'])} | {fmt_int(a['rps_per_core'])} | "
                f"{cpu} | {fmt_ms(a['p50_ms'])} | {fmt_ms(a['p99_ms'])} | {fmt_ms(a['p999_ms'])} | "
                f"{fmt_int(a['errors'])} | {fmt_mib(a['peak_rss_mib'])} | "
                f"{vs(z, a, 'rps', s)} | {vs(z, a, 'rps_per_core', s)} |{extra}"
            )
        notes = []
        for s in servers:
            a = agg.get((wl, wk, s))
            reason = data["skipped"].get(f"{s}|{wl}|{wk}")
            if reason and s not in ("ceiling", "nginx"):
                notes.append(f"{label(data, s)}: not run — {reason}.")
            if a and a["error_kinds"]:
                kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(a["error_kinds"].items()))
                why = ""
                if data["servers"][s].get("no_keepalive") and wl == "stream":
                    why = (
                        " — the streamed body is sent without chunking and ended by closing "
                        "the connection (`Connection: close`); the responses are complete, "
                        "but wrk counts each close as a read error"
                    )
                notes.append(f"{label(data, s)}: errors over all rounds: {kinds}{why}.")
            if a and a["failures"]:
                uniq = sorted(set(short_failure(f) for f in a["failures"]))
                if (s, wl) in KNOWN:
                    uniq.append(KNOWN[(s, wl)])
                notes.append(
                    f"{label(data, s)}: {len(a['failures'])} of {a['rounds']} runs "
                    f"failed — {'; '.join(uniq)}"
                )
        if notes:
            w("")
            for n in notes:
                w(f"- {n}")
        w("")

    # --- method
    w("## Method")
    w("")
    runs_ok = [r for r in data["runs"] if "rps" in r]
    others = [r.get("other_cpu_util") for r in runs_ok if r.get("other_cpu_util") is not None]
    waited = sum(r.get("quiet_wait_s", 0) for r in data["runs"])
    noisy = [r for r in data["runs"] if (r.get("other_cpu_before") or 0) >= 0.15]
    retried = sum(1 for r in data["runs"] if "discarded" in r)
    if others:
        w(
            f"- **Interference check.** The machine is shared, so before each run the driver "
            f"waits (≤ {data['config'].get('quiet_wait_s', 60):.0f} s) until other programs use "
            f"< 15 % of "
            f"a core; it waited {waited:.0f} s in all, and {len(noisy)} of {len(data['runs'])} "
            f"runs started without reaching that. During the runs, CPU used outside the server "
            f"and wrk (softirq time not charged to either, the driver's sampling, anything else) "
            f"was {statistics.median(others) * 100:.0f} % of one core at the median, "
            f"{max(others) * 100:.0f} % at most (`other_cpu_util` in the JSON, per run). "
            f"{retried} runs during which that exceeded "
            f"{cfg.get('retry_other', 0.35) * 100:.0f} % were run again and the cleaner of the "
            f"two kept (the other is in the JSON as `discarded`). † in a table marks a row whose "
            f"median is still above {NOISY * 100:.0f} %: treat it with care."
        )
    w(
        f"- Each run: the server starts pinned to core {cfg['server_cpu']} (`taskset -c "
        f"{cfg['server_cpu']}`), listening on 127.0.0.1 only; the driver waits until it answers "
        f"(≤ 15 s), wrk warms it up for {cfg['warmup_s']} s, then `wrk -t1 -c{cfg['connections']} "
        f"-d{cfg['duration_s']}s --latency --timeout 5s` runs pinned to core "
        f"{cfg['client_cpu']} (bounded to the duration + 10 s). A Lua `done()` hook prints the "
        "summary, including p99.9. The server is then stopped by PID (SIGINT; SIGKILL to every "
        "PID of its tree after 5 s)."
    )
    if cfg["rounds"] <= 2:
        w(
            f"- With {cfg['rounds']} rounds a median is the mean of the rounds, so one slow round "
            "moves it a long way; every round's numbers are in the JSON (`runs`)."
        )
    w(
        f"- The server, wrk, the idle holder and the Python-only loop run at niceness "
        f"{cfg.get('nice', 0)} (so that other programs on this shared machine take less of the "
        "two cores while they are measured)."
    )
    w(
        f"- Servers run interleaved: each round runs every workload × worker count, and within it "
        f"every server in turn, the order rotated each round; {cfg['rounds']} rounds; the tables "
        "show medians."
    )
    w(
        "- Keep-alive everywhere except where a server cannot: uWSGI `--http-socket` closes every "
        'connection, so it runs with `--add-header "Connection: close"` (wrk reconnects instead of '
        "counting an error per request); pyruvate 1.6.1 cannot keep connections alive, so wrk "
        "sends `Connection: close` to it. Both therefore pay a TCP connect per request in every "
        "workload."
    )
    w(
        "- Threads: defaults everywhere (wizgy 64 app threads; granian defaults; gunicorn "
        "`-k gthread` with 1 thread; waitress 4; pyruvate 2 worker threads), except `sleep`, where "
        "every server that has threads gets 64 (granian's `--blocking-threads 1` row uses 64 "
        "there) and wizgy keeps its defaults. bjoern, fastwsgi and meinheld are single-threaded."
    )
    w(
        "- `idle`: a Python script (`bench/idle_holder.py`, on the wrk core) opens "
        f"{cfg['idle_connections']:,} connections, sends one request on each and holds them idle "
        "while wrk runs hello; RLIMIT_NOFILE is raised to the hard limit for it and for every "
        "server. Servers with a keep-alive timeout or connection limit get 120 s / 10,000 here "
        "(wizgy `--keep-alive 120s`, gunicorn `--keep-alive 120 --worker-connections 10000`, "
        "waitress `--connection-limit=10000`), so the connections stay idle rather than closed."
    )
    w(
        "- 2 workers (hello, flask): each server's own process manager (wizgy/gunicorn/granian "
        "`--workers 2`, uWSGI `--processes 2 --master`, fastwsgi `workers=2`); bjoern and meinheld "
        "fork after listening. All workers still share core 0: this shows what a second process "
        "costs, not a second core. waitress and pyruvate have no multi-process mode."
    )
    w(
        "- `file`: servers without `wsgi.file_wrapper` get the PEP 3333 fallback in the app (the "
        "file read in 64 KiB blocks)."
    )
    w(
        "- Every server is installed from PyPI into `bench/.venv` by `bench/run.sh` "
        "as `shared/PEERS.md` describes; wizgy is built from this checkout (`pip install .`, "
        "release profile)."
    )
    w("")
    w("## Machine")
    w("")
    w(f"- {m['nproc']} cores: {m['cpu_model']}; {m['memory']} memory")
    w(f"- kernel {m['kernel']} ({m['os']})")
    w("")
    w("## Versions")
    w("")
    w("| component | version |")
    w("|---|---|")
    for k, val in v.items():
        w(f"| {k} | {val if val else 'not installed'} |")
    w("")
    if data.get("missing") or data.get("install_notes"):
        w("## Not measured")
        w("")
        for s, why in data.get("missing", {}).items():
            w(f"- {s}: {why}")
        for n in data.get("install_notes", []):
            w(f"- {n}")
        w("")
    with open(os.path.join(DOCS, md_name), "w") as f:
        f.write("\n".join(L))


def _wrk_of(data, wl, wk):
    for r in data["runs"]:
        if r["workload"] == wl and r["workers"] == wk and r["server"] == "wizgy" and "wrk" in r:
            cmd = r["wrk"].replace(r["wrk"].split()[-1], "http://127.0.0.1:PORT/")
            return cmd.replace(BENCH + "/", "bench/")
    return ""


# ---------------------------------------------------------------------------------------------


def write_rounds(w, data, agg, peers, configs):
    """Per round: wizgy and the best peer (per core, by median) side by side, and how far each
    server's own rounds lie apart: how much one ratio from this machine can tell."""
    per_core = {}
    for r in data["runs"]:
        if r.get("rps_per_core") is not None and "error" not in r and r.get("requests"):
            key = (r["workload"], r["workers"], r["server"])
            per_core.setdefault(key, {})[r["round"]] = r["rps_per_core"]
    w("## Round by round")
    w("")
    w(
        "req/s per server core of wizgy and of the headline's best peer per core in each round "
        "(the servers of a round run one after the other), the ratio per round, and each "
        "server's spread: its fastest round ÷ its slowest. Where the spread is wider than the "
        "margin a target asks for, one run's median cannot settle that target."
    )
    w("")
    w(
        "| workload | best peer | wizgy per round | peer per round | wizgy ÷ peer per round | "
        "wizgy spread | peer spread |"
    )
    w("|---|---|---|---|---|---:|---:|")

    def spread(values):
        return f"{max(values) / min(values):.2f}×" if values and min(values) > 0 else "–"

    for wl, wk in configs:
        mine = per_core.get((wl, wk, "wizgy"), {})
        _, peer = best(agg, wl, wk, peers, "rps_per_core")
        theirs = per_core.get((wl, wk, peer), {}) if peer else {}
        rounds = sorted(set(mine) & set(theirs))
        if not rounds:
            continue
        name = wl if wk == 1 else f"{wl}, {wk} workers"
        w(
            f"| {name} | {label(data, peer)} | "
            + " / ".join(fmt_int(mine[i]) for i in rounds)
            + " | "
            + " / ".join(fmt_int(theirs[i]) for i in rounds)
            + " | "
            + " / ".join(f"{mine[i] / theirs[i]:.2f}" for i in rounds)
            + f" | {spread(list(mine.values()))} | {spread(list(theirs.values()))} |"
        )
    w("")


def write_machine(w, data, agg, peers, configs):
    """Whole-machine CPU per request beside the per-server-core figure."""
    w("## The whole machine's CPU per request")
    w("")
    w(
        "*server µs* = 1 ÷ req/s per server core (the headline's measure); *machine µs* = busy "
        "CPU of both cores (server, wrk and the kernel on both) ÷ requests, from /proc/stat. On "
        "loopback the kernel does the TCP work of both ends, and on which core depends on the "
        "server: a send that finds the client's window open is transmitted, and the client's "
        "receive processing run, on the sender's core; data queued in the socket while the "
        "window is closed is transmitted later from the client's core, when its ACK arrives. A "
        "server that blocks in a large write, one connection at a time, has most of its "
        "transfer finished on wrk's core and looks cheap per server core. The machine figure "
        "counts it wherever it runs (and counts wrk's own work too, including reconnects for "
        "servers without keep-alive). Lower is better; *peer ÷ wizgy* above 1.00× means wizgy "
        "used less of the machine per request."
    )
    w("")
    w(
        "| workload | wizgy server µs | wizgy machine µs | best peer per core: server µs | "
        "its machine µs | peer ÷ wizgy (machine) | least machine µs among peers | "
        "peer ÷ wizgy (machine) |"
    )
    w("|---|---:|---:|---|---:|---:|---|---:|")

    def us(v):
        return "–" if v is None else f"{v:,.1f}"

    for wl, wk in configs:
        z = agg.get((wl, wk, "wizgy"))
        if not z or not z.get("rps_per_core") or wl == "sleep":
            continue
        _, bcs = best(agg, wl, wk, peers, "rps_per_core")
        lm, lms = best(agg, wl, wk, peers, "machine_us_per_request", highest=False)
        zm = z.get("machine_us_per_request")
        b = agg.get((wl, wk, bcs)) if bcs else None
        bm = b.get("machine_us_per_request") if b else None
        name = wl if wk == 1 else f"{wl}, {wk} workers"
        w(
            f"| {name} | {us(1e6 / z['rps_per_core'])} | {us(zm)} | "
            f"{us(1e6 / b['rps_per_core']) if b and b.get('rps_per_core') else '–'} "
            f"{label(data, bcs) if bcs else ''} | {us(bm)} | {fmt_ratio(bm, zm)} | "
            f"{us(lm)} {label(data, lms) if lms else ''} | {fmt_ratio(lm, zm)} |"
        )
    w("")
    w(
        "sleep is left out: its requests wait 10 ms each, so CPU per request says little about "
        "the server."
    )
    w("")


def per_round(data, metric):
    """(workload, workers, server) -> {round: metric} of the successful runs."""
    out = {}
    for r in data["runs"]:
        if r.get(metric) is not None and "error" not in r and r.get("requests"):
            key = (r["workload"], r["workers"], r["server"])
            out.setdefault(key, {})[r["round"]] = r[metric]
    return out


def write_targets(w, data, agg, peers):
    """Issue #17's targets for wizgy with its defaults, checked against this run.

    A ratio target is met when the median of the per-round ratios meets it and no more than one
    round's ratio falls below 1.0× (issue 17's rule: one round on this VM proves nothing, and
    a median alone hides a run where wizgy lost most rounds)."""
    rounds_of = {m: per_round(data, m) for m in ("rps_per_core", "machine_us_per_request", "rps")}

    def get(wl, s, metric, wk=1):
        a = agg.get((wl, wk, s))
        return a[metric] if a and a["ok"] else None

    rows = []

    def check(name, target, value, ok):
        verdict = "–" if ok is None else ("met" if ok else "**not met**")
        rows.append(f"| {name} | {target} | {value} | {verdict} |")

    def ratio_row(name, wl, metric, other, want, what, lower_is_better=False, wk=1):
        """wizgy vs server `other` on `metric`, round by round (the ratio oriented so that
        above 1 is wizgy ahead)."""
        mine = rounds_of[metric].get((wl, wk, "wizgy"), {})
        theirs = rounds_of[metric].get((wl, wk, other), {}) if other else {}
        common = sorted(set(mine) & set(theirs))
        if not common:
            return check(name, f"≥ {want}× {what}", "not measured", None)
        ratios = [
            (theirs[i] / mine[i]) if lower_is_better else (mine[i] / theirs[i]) for i in common
        ]
        median = statistics.median(ratios)
        below = sum(r < 1.0 for r in ratios)
        value = (
            f"{median:.2f}× (rounds {min(ratios):.2f}-{max(ratios):.2f}, "
            f"{below} of {len(ratios)} below 1.0×)"
        )
        check(name, f"≥ {want}× {what}", value, median >= want and below <= 1)

    for peer in ("bjoern", "fastwsgi"):
        ratio_row(
            f"hello CPU per request vs {peer}",
            "hello",
            "rps_per_core",
            peer,
            1.11,
            f"(i.e. ≤ 0.9× {peer}'s CPU per request)",
        )
    ratio_row("hello req/s vs the Rust ceiling", "hello", "rps", "ceiling", 0.9, "ceiling req/s")
    zp, bp = get("hello", "wizgy", "p99_ms"), best(agg, "hello", 1, peers, "p99_ms", False)[0]
    if zp is not None and bp is not None:
        check("hello p99", "≤ best peer's p99", f"{zp:.2f} ms vs {bp:.2f} ms", zp <= bp)
    for wl in ("flask", "django"):
        ratio_row(f"{wl} per core vs bjoern", wl, "rps_per_core", "bjoern", 1.15, "bjoern")
    _, post_peer = best(agg, "post", 1, peers, "rps_per_core")
    ratio_row(
        "post per core vs best peer",
        "post",
        "rps_per_core",
        post_peer,
        1.2,
        f"best peer ({post_peer})",
    )
    for wl in ("big", "stream"):
        _, peer = best(agg, wl, 1, peers, "machine_us_per_request", highest=False)
        ratio_row(
            f"{wl}: whole-machine CPU per request vs best peer",
            wl,
            "machine_us_per_request",
            peer,
            1.3,
            f"best peer ({peer}), peer µs ÷ wizgy µs",
            lower_is_better=True,
        )
    ratio_row("close per core vs uWSGI", "close", "rps_per_core", "uwsgi", 1.0, "uWSGI")
    zr, zc = get("sleep", "wizgy", "rps"), get("sleep", "wizgy", "cpu_util")
    if zr is not None:
        check(
            "sleep",
            "≥ 6,200 req/s at ≤ 50 % CPU",
            f"{zr:,.0f} req/s at {zc * 100:.0f} % CPU",
            zr >= 6200 and zc <= 0.5,
        )
    worker = get("hello", "wizgy", "peak_process_rss_mib")
    if worker is not None:
        check("hello RSS per worker (its peak)", "≤ 16 MiB", f"{worker:.1f} MiB", worker <= 16)
    for wl in ("hello", "flask"):
        one, two = get(wl, "wizgy", "rps_per_core"), get(wl, "wizgy", "rps_per_core", 2)
        if one and two:
            check(f"{wl}: 2 workers per core vs 1", "≥ 1.00×", f"{two / one:.2f}×", two >= one)
    if not rows:
        return
    w("## Issue #17's targets, checked on this run")
    w("")
    w(
        "wizgy with its default settings, 1 worker unless noted. A ratio is the median of the "
        "per-round ratios (each round runs every server one after the other); a target is met "
        "when that median meets it and no more than one round falls below 1.0×. CPU per "
        "request is 1 ÷ req/s per server core (the whole process tree's user + system time)."
    )
    w("")
    w("| target | wanted | this run | |")
    w("|---|---|---|---|")
    for r in rows:
        w(r)
    w("")


def write_png(data, agg, path):
    cfg = data["config"]
    servers = cfg["servers"]
    configs = [(wl, wk) for wl in cfg["workloads"] for wk in data["workloads"][wl]["workers"]]
    names = [wl if wk == 1 else f"{wl}\n{wk} workers" for wl, wk in configs]
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#bcbd22",
        "#17becf",
        "#aec7e8",
        "#98df8a",
        "#c5b0d5",
        "#c49c94",
    ]
    peers = [s for s in servers if s not in ("wizgy", "ceiling")]
    colors = {s: palette[i % len(palette)] for i, s in enumerate(peers)}
    colors["wizgy"] = "#d62728"
    colors["ceiling"] = "#7f7f7f"
    panels = [
        ("rps_per_core", "req/s per server core (log)"),
        ("rps", "req/s (log)"),
        ("peak_rss_mib", "peak RSS of the server's processes, MiB (log)"),
    ]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(20, 22))
    n = len(servers)
    width = 0.84 / n
    for ax, (metric, title) in zip(axes, panels):
        for i, s in enumerate(servers):
            xs, ys = [], []
            for j, (wl, wk) in enumerate(configs):
                a = agg.get((wl, wk, s))
                if a and a["ok"] and a[metric]:
                    xs.append(j - 0.42 + width * (i + 0.5))
                    ys.append(a[metric])
            ax.bar(
                xs,
                ys,
                width,
                label=label(data, s),
                color=colors[s],
                edgecolor="black" if s == "wizgy" else "none",
                linewidth=0.8,
            )
        ax.set_yscale("log")
        ax.set_title(title, fontsize=13, loc="left")
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels(names, fontsize=11)
        ax.grid(axis="y", which="major", alpha=0.4)
        ax.grid(axis="y", which="minor", alpha=0.12)
        ax.set_xlim(-0.5, len(configs) - 0.5)
        for j in range(1, len(configs)):
            ax.axvline(j - 0.5, color="#cccccc", linewidth=0.6)
    # Each round's ratio, not only the median: how far one run on this VM can be trusted.
    ax = axes[len(panels)]
    rounds = per_round(data, "rps_per_core")
    for j, (wl, wk) in enumerate(configs):
        _, peer = best(agg, wl, wk, peers, "rps_per_core")
        mine, theirs = rounds.get((wl, wk, "wizgy"), {}), rounds.get((wl, wk, peer), {})
        ratios = [mine[i] / theirs[i] for i in sorted(set(mine) & set(theirs))]
        if not ratios:
            continue
        ax.scatter([j] * len(ratios), ratios, color="#d62728", s=30, zorder=3)
        ax.hlines(statistics.median(ratios), j - 0.3, j + 0.3, color="black", linewidth=2)
        ax.annotate(
            peer,
            (j, max(ratios)),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=9,
        )
    ax.axhline(1.0, color="#888888", linewidth=1, linestyle="--")
    ax.set_title(
        "wizgy ÷ the best peer per server core, each round (dots) and their median (bar)",
        fontsize=13,
        loc="left",
    )
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels(names, fontsize=11)
    ax.set_xlim(-0.5, len(configs) - 0.5)
    ax.grid(axis="y", alpha=0.4)
    axes[0].legend(ncol=min(n, 6), fontsize=10, loc="lower center", bbox_to_anchor=(0.5, 1.06))
    fig.suptitle(
        f"wizgy vs WSGI peers — {data['machine']['nproc']} cores, server on core 0, "
        f"wrk -t1 -c{cfg['connections']} on core 1, medians of {cfg['rounds']} rounds "
        f"× {cfg['duration_s']} s (higher is better except RSS)",
        fontsize=14,
        y=0.995,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(BENCH, "results", "results.json")
    with open(path) as f:
        data = json.load(f)
    agg = aggregate(data)
    os.makedirs(DOCS, exist_ok=True)
    # results.json -> benchmarks.md; results-NAME.json (BENCH_RESULTS) -> benchmarks-NAME.md
    stem = os.path.basename(path).removesuffix(".json").replace("results", "benchmarks", 1)
    write_png(data, agg, os.path.join(DOCS, f"{stem}.png"))
    write_markdown(data, agg, f"{stem}.png", f"{stem}.md")
    print(f"[report] wrote docs/{stem}.md and docs/{stem}.png")


if __name__ == "__main__":
    main()

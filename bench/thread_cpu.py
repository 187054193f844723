#!/usr/bin/env python3
"""Where a server's CPU goes, by thread name, between two moments.

    bench/thread_cpu.py snap PID > before.json
    ... load ...
    bench/thread_cpu.py since PID before.json SECONDS [REQUESTS]
        # one line: % of one core per thread group (and, given the requests served, the
        # server's CPU per request: what a call costs, whatever share of the machine it got)

Several stretches of one kind of load add up in a total, reported as one:

    bench/thread_cpu.py add PID before.json TOTAL.json SECONDS REQUESTS   # after each stretch
    bench/thread_cpu.py report TOTAL.json

Threads are grouped by name with digits dropped (actix-rt|system:0|arbiter:3 -> one group)."""
import json, os, re, sys

TICKS = os.sysconf("SC_CLK_TCK")


def snap(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        group = re.sub(r"\d+", "", name)
        out[group] = out.get(group, 0) + int(fields[11]) + int(fields[12])
    return out


def ticks_since(pid, before_file):
    with open(before_file) as f:
        before = json.load(f)
    return {g: t - before.get(g, 0) for g, t in snap(pid).items()}


def line(ticks, seconds, requests):
    used = {g: t / TICKS / seconds * 100 for g, t in ticks.items()}
    total = sum(used.values())
    top = sorted(((u, g) for g, u in used.items() if u >= 0.5), reverse=True)
    per_request = f" ({total / 100 * seconds / requests * 1e6:.0f} µs a request)" if requests > 0 else ""
    return f"server CPU {total:.0f}% of a core{per_request}: " + ", ".join(f"{g} {u:.0f}%" for u, g in top)


mode = sys.argv[1]
if mode == "snap":
    json.dump(snap(sys.argv[2]), sys.stdout)
elif mode == "since":
    requests = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    print(line(ticks_since(sys.argv[2], sys.argv[3]), float(sys.argv[4]), requests))
elif mode == "add":
    total_file = sys.argv[4]
    total = {"ticks": {}, "seconds": 0.0, "requests": 0}
    if os.path.exists(total_file):
        with open(total_file) as f:
            total = json.load(f)
    for g, t in ticks_since(sys.argv[2], sys.argv[3]).items():
        total["ticks"][g] = total["ticks"].get(g, 0) + t
    total["seconds"] += float(sys.argv[5])
    total["requests"] += int(sys.argv[6])
    with open(total_file, "w") as f:
        json.dump(total, f)
elif mode == "report":
    with open(sys.argv[2]) as f:
        total = json.load(f)
    print(line(total["ticks"], total["seconds"], total["requests"]))

#!/usr/bin/env python3
"""Where a server's CPU goes, by thread name, between two moments.

    bench/thread_cpu.py snap PID > before.json
    ... load ...
    bench/thread_cpu.py since PID before.json SECONDS [REQUESTS]
        # one line: % of one core per thread group (and, given the requests served, the
        # server's CPU per request: what a call costs, whatever share of the machine it got)

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


if sys.argv[1] == "snap":
    json.dump(snap(sys.argv[2]), sys.stdout)
else:
    with open(sys.argv[3]) as f:
        before = json.load(f)
    seconds = float(sys.argv[4])
    now = snap(sys.argv[2])
    used = {g: (t - before.get(g, 0)) / TICKS / seconds * 100 for g, t in now.items()}
    total = sum(used.values())
    top = sorted(((u, g) for g, u in used.items() if u >= 0.5), reverse=True)
    per_request = ""
    if len(sys.argv) > 5 and int(sys.argv[5]) > 0:
        per_request = f" ({total / 100 * seconds / int(sys.argv[5]) * 1e6:.0f} µs a request)"
    print(f"server CPU {total:.0f}% of a core{per_request}: " + ", ".join(f"{g} {u:.0f}%" for u, g in top))

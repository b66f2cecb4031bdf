#!/usr/bin/env python3
"""Writes the window golden cases' input.jsonl and expected.jsonl.

The expected results are a brute-force computation over the input sorted by time, not
Eddy's output: clicks out of order within the pipeline's max_out_of_orderness, a few far
too late (dropped by late_events = "drop"), and a last click without a key whose only
effect is to move the watermark past every window (it is bad input, and skipped), so a
server that never sees the end of the input closes the same windows.

    python3 tests/pipelines/windows.py
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
BOUND = 20_000  # the cases' max_out_of_orderness
T0 = 1_700_000_000_000


def clicks(seed, keys, n, step):
    rng = random.Random(seed)
    t = T0
    events = []
    for _ in range(n):
        t += rng.randrange(step)
        events.append((rng.choice(keys), t))
    # Out of order within the bound: swap neighbours less than BOUND apart.
    for _ in range(n * 2):
        i = rng.randrange(n - 1)
        if events[i + 1][1] - events[i][1] < BOUND:
            events[i], events[i + 1] = events[i + 1], events[i]
    # Two clicks far too late: more than the bound behind the largest time before them.
    for at in (n // 3, 2 * n // 3):
        late_ts = max(ts for _, ts in events[:at]) - BOUND - 90_000
        events.insert(at, (keys[0], late_ts))
    return events


def on_time(events):
    """The events a task keeps under late_events = "drop": record by record, those not
    below the watermark (largest time seen minus the bound)."""
    kept, watermark = [], None
    for key, ts in events:
        if watermark is not None and ts < watermark:
            continue
        kept.append((key, ts))
        watermark = max(watermark if watermark is not None else ts - BOUND, ts - BOUND)
    return kept


def windows(events, size, slide):
    counts = {}
    for key, ts in events:
        start = ts // slide * slide
        while start > ts - size:
            counts[(key, start)] = counts.get((key, start), 0) + 1
            start -= slide
    out = []
    for (key, start), n in counts.items():
        end = start + size
        value = {"page": key, "window_start": start, "window_end": end, "count": n}
        out.append(((end, len(key), key, start), key, value, end - 1))
    return out


def sessions(events, gap):
    by_key = {}
    for key, ts in events:
        by_key.setdefault(key, []).append(ts)
    out = []
    for key, times in by_key.items():
        times.sort()
        start = last = times[0]
        n = 0
        for t in times + [None]:
            if t is None or t - last >= gap:
                end = last + gap
                value = {"user": key, "session_start": start, "session_end": end, "clicks": n}
                out.append(((end, len(key), key, start), key, value, end - 1))
                if t is None:
                    break
                start, n = t, 0
            last = t
            n += 1
    return out


def write(case, events, results):
    d = os.path.join(HERE, case)
    with open(os.path.join(d, "input.jsonl"), "w") as f:
        for key, ts in events:
            f.write(json.dumps({"key": key, "value": "click", "timestamp": ts}) + "\n")
        last = max(ts for _, ts in events)
        f.write(json.dumps({"value": "end", "timestamp": last + 3_600_000}) + "\n")
    with open(os.path.join(d, "expected.jsonl"), "w") as f:
        # Windows close in timer order: by end, then by the window's key in the store.
        for _, key, value, ts in sorted(results, key=lambda r: r[0]):
            line = {"key": key, "value": json.dumps(value, separators=(",", ":")), "timestamp": ts}
            f.write(json.dumps(line, separators=(",", ":")) + "\n")


pages = clicks(7, ["home", "cart", "search"], 120, 9_000)
write("clicks-tumbling", pages, windows(on_time(pages), 60_000, 60_000))
write("clicks-sliding", pages, windows(on_time(pages), 60_000, 20_000))
users = clicks(11, ["ann", "bob", "cy"], 120, 12_000)
write("user-sessions", users, sessions(on_time(users), 30_000))
# The same behind a repartition: a second stage's watermark must give the same sessions.
write("user-sessions-repartitioned", users, sessions(on_time(users), 30_000))

#!/usr/bin/env python3
"""Generate Segment calls for the replay benchmark: N calls over L leads, one per line.

Usage: gen-events.py [--events N] [--leads L] [--seed S] > events.jsonl

Deterministic for a given seed. Calls are in time order, spread over 60 days, with the
event mix that bench/bench20.rules scores (pages, forms, feature use, orders, identifies).
"""
import argparse
import json
import random
from datetime import datetime, timedelta, timezone


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    span = 60 * 86400
    step = span / args.events
    sources = ["google", "newsletter", "linkedin", "webinar", None]
    paths = ["/pricing", "/pricing/teams", "/docs/start", "/blog/scoring", "/careers", "/"]
    out = []
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for i in range(args.events):
        lead = rnd.randrange(args.leads)
        t = start + timedelta(seconds=i * step)
        call = {"messageId": f"m{i}", "userId": f"u{lead}",
                "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
        r = rnd.random()
        if r < 0.45:
            p = rnd.choice(paths)
            call.update(type="page", properties={"path": p, "url": "https://acme.example" + p})
        elif r < 0.60:
            call.update(type="track", event="Feature Used", properties={"feature": rnd.choice(["import", "report", "share"])})
        elif r < 0.70:
            call.update(type="track", event="Form Submitted", properties={"form": rnd.choice(["demo", "contact", "newsletter"])})
        elif r < 0.78:
            call.update(type="track", event="Webinar Registered", properties={"webinar": "w-12"})
        elif r < 0.85:
            call.update(type="identify", traits={"title": rnd.choice(["VP Sales", "Engineer", "Head of Growth"]),
                                                 "email": f"p{lead}@" + rnd.choice(["acme.example", "gmail.com"]),
                                                 "plan": rnd.choice(["trial", "free", "pro"])})
        elif r < 0.90:
            call.update(type="group", groupId=f"g{lead % 977}", traits={"employees": rnd.choice([12, 120, 900, 12000])})
        elif r < 0.95:
            call.update(type="track", event="Order Completed", properties={"revenue": rnd.choice([0, 49.5, 99, 480])})
        else:
            call.update(type="track", event="Support Ticket", properties={"topic": rnd.choice(["upgrade", "bug"])})
        src = rnd.choice(sources)
        if src:
            call["context"] = {"campaign": {"source": src}}
        out.append(dumps(call))
        if len(out) >= 10000:
            print("\n".join(out))
            out.clear()
    if out:
        print("\n".join(out))


if __name__ == "__main__":
    main()

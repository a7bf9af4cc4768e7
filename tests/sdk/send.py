#!/usr/bin/env python3
"""Sends one lead's identify, page and track calls through a real analytics library, as a
product team's backend would: `send.py segment|rudderstack HOST WRITE_KEY USER_ID [plain]`.

The library batches the three calls and posts them to HOST/v1/batch (gzip unless `plain`,
Basic auth with the write key). Exits 1 when the library reports a failed delivery, 0 otherwise.
"""
import sys

lib, host, write_key, user = sys.argv[1:5]
gzip = sys.argv[5:6] != ["plain"]
errors = []


def on_error(error, batch):
    errors.append(f"{error!r} ({len(batch)} calls)")


if lib == "segment":
    from segment.analytics.client import Client
elif lib == "rudderstack":
    from rudderstack.analytics.client import Client
else:
    sys.exit(f"unknown library {lib!r}")

# gzip on for both unless `plain` (on is RudderStack's default, off Segment's); no retries,
# so a refused batch is reported at once
client = Client(write_key, host=host, gzip=gzip, on_error=on_error, max_retries=0, upload_interval=0.1)
client.identify(user, {"title": "VP Marketing", "email": f"{user}@acme-corp.com"})
client.page(user, name="Pricing", properties={"path": "/pricing"})
client.track(user, "Form Submitted", {"form": "demo"})
client.flush()
client.join()
if errors:
    print(f"{lib}: delivery failed: {'; '.join(errors)}", file=sys.stderr)
    sys.exit(1)
print(f"{lib} (python): 3 calls delivered for {user}")

#!/usr/bin/env bash
# The score function under `cargo lambda watch`, as an engineer runs it locally (README:
# "Run the functions locally"): DynamoDB Local on a free loopback port, the table made with
# `leadscore dynamodb create-table`, then a signed Segment call sent twice, once with
# `cargo lambda invoke --data-file` (a Function URL event) and once over HTTP to
# http://127.0.0.1:PORT/lambda-url/score/events, and the lead read back with GET /leads/{id}.
# Exits non-zero when any answer is not the expected one.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LEADSCORE=${LEADSCORE:-$ROOT/target/release/leadscore}
source "$ROOT/tests/lambda/local.sh"
start_dynamodb_local

# Local settings only: a secret made for this run.
export LEADSCORE_TABLE=leadscore-local
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
"$LEADSCORE" dynamodb create-table

INVOKE_PORT=$(free_port)
# release by default; LEADSCORE_LAMBDA_PROFILE=debug builds in the dev profile (what .ci/run uses)
PROFILE_FLAG=(--release)
[ "${LEADSCORE_LAMBDA_PROFILE:-release}" = debug ] && PROFILE_FLAG=()
cargo lambda watch "${PROFILE_FLAG[@]}" --bin score --invoke-port "$INVOKE_PORT" \
  --env-var "LEADSCORE_TABLE=$LEADSCORE_TABLE,LEADSCORE_RULES=$PWD/rules/b2b-saas,LEADSCORE_WEBHOOK_SECRET=$SECRET,LEADSCORE_API_TOKEN=$TOKEN,AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL,AWS_REGION=$AWS_REGION,AWS_ACCESS_KEY_ID=local,AWS_SECRET_ACCESS_KEY=local,RUST_LOG=info" \
  >"$WORK/watch.log" 2>&1 &
PIDS+=($!)
wait_port "$INVOKE_PORT" 600

# A signed Segment track call, wrapped in the Function URL event Lambda would deliver.
python3 - "$SECRET" "$WORK" <<'PY'
import hashlib, hmac, json, sys
secret, work = sys.argv[1], sys.argv[2]
def call(mid):
    return json.dumps({"type": "track", "event": "Demo Requested", "userId": "usr_local",
                       "messageId": mid, "timestamp": "2026-11-20T10:00:00Z",
                       "properties": {"plan": "trial"}})
def sig(body):
    return hmac.new(secret.encode(), body.encode(), hashlib.sha1).hexdigest()
body = call("local-1")
event = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/events", "rawQueryString": "",
    "headers": {"content-type": "application/json", "x-signature": sig(body)},
    "requestContext": {"accountId": "anonymous", "apiId": "local", "domainName": "local.lambda-url.us-east-1.on.aws",
        "domainPrefix": "local", "http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1", "userAgent": "Segment.io/1.0"}, "requestId": "local-request",
        "routeKey": "$default", "stage": "$default", "time": "20/Nov/2026:10:00:00 +0000", "timeEpoch": 1795000000000},
    "body": body, "isBase64Encoded": False,
}
open(f"{work}/event.json", "w").write(json.dumps(event))
body2 = call("local-2")
open(f"{work}/body2.json", "w").write(body2)
open(f"{work}/sig2", "w").write(sig(body2))
PY

cargo lambda invoke score --invoke-port "$INVOKE_PORT" --data-file "$WORK/event.json" >"$WORK/invoke.json" || {
  echo "cargo lambda invoke failed; watch log:" >&2; tail -50 "$WORK/watch.log" >&2; exit 1; }
python3 - "$WORK/invoke.json" <<'PY'
import json, sys
resp = json.load(open(sys.argv[1]))
assert resp["statusCode"] == 200, resp
body = json.loads(resp["body"])
assert body["applied"] == 1 and body["results"][0]["lead"] == "usr_local", body
print("cargo lambda invoke: 200,", json.dumps(body["results"][0]))
PY

# The same function over HTTP, as a sender reaches a Function URL under cargo lambda watch.
URL="http://127.0.0.1:$INVOKE_PORT/lambda-url/score"
code=$(curl -sS -o "$WORK/post.json" -w '%{http_code}' -X POST "$URL/events" \
  -H 'content-type: application/json' -H "x-signature: $(cat "$WORK/sig2")" --data-binary @"$WORK/body2.json")
[ "$code" = 200 ] || { echo "POST /events answered $code: $(cat "$WORK/post.json")" >&2; exit 1; }
code=$(curl -sS -o "$WORK/unsigned.json" -w '%{http_code}' -X POST "$URL/events" \
  -H 'content-type: application/json' --data-binary @"$WORK/body2.json")
[ "$code" = 401 ] || { echo "an unsigned POST answered $code, not 401" >&2; exit 1; }
code=$(curl -sS -o "$WORK/lead.json" -w '%{http_code}' "$URL/leads/usr_local" -H "authorization: Bearer $TOKEN")
[ "$code" = 200 ] || { echo "GET /leads/usr_local answered $code: $(cat "$WORK/lead.json")" >&2; exit 1; }
python3 - "$WORK/lead.json" <<'PY'
import json, sys
lead = json.load(open(sys.argv[1]))
assert lead["id"] == "usr_local" and lead["events"] == 2, lead
print("cargo lambda watch over HTTP: POST 200, unsigned 401, GET /leads/usr_local:", lead["events"], "events, score", lead["score"])
PY
echo "cargo lambda: ok"

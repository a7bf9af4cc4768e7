#!/usr/bin/env bash
# The analytics libraries that product teams already run, pinned (requirements.txt,
# package-lock.json), sending to leadscore as their host (SPEC 8): segment-analytics-python,
# rudder-sdk-python, @segment/analytics-node and @rudderstack/rudder-sdk-node each send one
# lead's identify, page and track calls (send.py, send.mjs) to `leadscore serve` and to the
# score function under `cargo lambda watch` on DynamoDB Local. Each lead read back with
# GET /leads/{id} must have the fit, engagement and stage that rules/b2b-saas gives those
# three calls; each library sent with a wrong write key must report the refusal and leave no
# lead; no kept call may hold a write key. Exits non-zero on the first miss.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
LEADSCORE=${LEADSCORE:-$ROOT/target/debug/leadscore}
SDK="$ROOT/tests/sdk"
source "$ROOT/tests/lambda/local.sh"
[ -d "$SDK/node_modules/@segment/analytics-node" ] || (cd "$SDK" && npm ci --no-audit --no-fund --silent)
python3 -c 'import segment.analytics, rudderstack.analytics' 2>/dev/null \
  || python3 -m pip install --quiet -r "$SDK/requirements.txt"

# Local settings only: keys and a token made for this run. Two write keys, as a team with
# two sources configures them: the Segment libraries send the first, RudderStack's the second.
key() { python3 -c 'import secrets; print(secrets.token_hex(12))'; }
KEY_SEGMENT=$(key); KEY_RUDDER=$(key); SECRET=$(key); TOKEN=$(key)
RUN=$(key | cut -c1-6)
cat >"$WORK/env" <<ENV
LEADSCORE_WRITE_KEY=$KEY_SEGMENT,$KEY_RUDDER
LEADSCORE_WEBHOOK_SECRET=$SECRET
LEADSCORE_API_TOKEN=$TOKEN
LEADSCORE_RULES=$ROOT/rules/b2b-saas
ENV

# leadscore serve, on the embedded store and its journal
SERVE_PORT=$(free_port)
(set -a; source "$WORK/env"; exec "$LEADSCORE" serve --port "$SERVE_PORT" --data "$WORK/journal.jsonl") \
  >"$WORK/serve.log" 2>&1 &
PIDS+=($!)

# the score function under cargo lambda watch, on DynamoDB Local
start_dynamodb_local
export LEADSCORE_TABLE=leadscore-sdk
"$LEADSCORE" dynamodb create-table >/dev/null
cat >>"$WORK/env" <<ENV
LEADSCORE_TABLE=$LEADSCORE_TABLE
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_REGION=$AWS_REGION
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
RUST_LOG=info
ENV
INVOKE_PORT=$(free_port)
PROFILE_FLAG=(--release)
[ "${LEADSCORE_LAMBDA_PROFILE:-release}" = debug ] && PROFILE_FLAG=()
cargo lambda watch "${PROFILE_FLAG[@]}" --bin score --invoke-port "$INVOKE_PORT" --env-file "$WORK/env" \
  >"$WORK/watch.log" 2>&1 &
PIDS+=($!)
wait_port "$SERVE_PORT" 60 || { cat "$WORK/serve.log" >&2; exit 1; }
wait_port "$INVOKE_PORT" 600
# cargo lambda builds and starts the function on its first request: make that request here,
# so the libraries (which are not retried) do not meet a function still compiling
code=$(curl -sS -m 900 -o "$WORK/warm.json" -w '%{http_code}' "http://127.0.0.1:$INVOKE_PORT/lambda-url/score/leads/warm-up" \
  -H "authorization: Bearer $TOKEN")
[ "$code" = 404 ] || { echo "score did not start: GET answered $code: $(cat "$WORK/warm.json")" >&2; tail -40 "$WORK/watch.log" >&2; exit 1; }

# GET the lead, and compare it with what rules/b2b-saas gives identify (title "VP
# Marketing": fit 15), page /pricing (+10) and track Form Submitted form=demo (+40): fit
# 15, engagement 50, stage sql, 3 events. With `absent`, the lead must not exist.
check_lead() { # check_lead BASE_URL ID [absent]
  local code
  code=$(curl -sS -o "$WORK/lead.json" -w '%{http_code}' "$1/leads/$2" -H "authorization: Bearer $TOKEN")
  if [ "${3:-}" = absent ]; then
    [ "$code" = 404 ] || { echo "$2: refused with a wrong key, yet GET answered $code: $(cat "$WORK/lead.json")" >&2; return 1; }
    return 0
  fi
  [ "$code" = 200 ] || { echo "GET /leads/$2 answered $code: $(cat "$WORK/lead.json")" >&2; return 1; }
  python3 - "$WORK/lead.json" "$2" <<'PY'
import json, sys
lead, want = json.load(open(sys.argv[1])), sys.argv[2]
got = {k: lead.get(k) for k in ("id", "fit", "engagement", "stage", "events")}
expected = {"id": want, "fit": 15, "engagement": 50, "stage": "sql", "events": 3}
assert got == expected, f"{want}: got {got}, expected {expected}"
PY
}

logs() { # the server's log, when a library reports a failure
  if [ "$1" = serve ]; then tail -20 "$WORK/serve.log" >&2; else tail -40 "$WORK/watch.log" >&2; fi
}

send() { # send LANG LIB HOST KEY USER [plain]
  if [ "$1" = python ]; then python3 "$SDK/send.py" "${@:2}"; else node "$SDK/send.mjs" "${@:2}"; fi
}

# To serve, the libraries send as they do by default (RudderStack's gzipped). To score, gzip
# is off: cargo lambda's emulator turns a body labelled JSON into a UTF-8 string and answers
# 500 itself for a gzipped one, before the function sees it (a deployed Function URL
# base64-encodes a compressed body; tests/tests/score.rs sends score that event).
for target in serve score; do
  if [ "$target" = serve ]; then BASE="http://127.0.0.1:$SERVE_PORT"; ENC=(); else BASE="http://127.0.0.1:$INVOKE_PORT/lambda-url/score"; ENC=(plain); fi
  for lang in python node; do
    for lib in segment rudderstack; do
      if [ "$lib" = segment ]; then KEY=$KEY_SEGMENT; else KEY=$KEY_RUDDER; fi
      user="$lib-$lang-$target-$RUN"
      send "$lang" "$lib" "$BASE" "$KEY" "$user" "${ENC[@]}" || { logs "$target"; exit 1; }
      check_lead "$BASE" "$user"
      echo "  $target: GET /leads/$user: fit 15, engagement 50, stage sql"
      wrong="$user-wrong-key"
      if send "$lang" "$lib" "$BASE" "not-$KEY" "$wrong" "${ENC[@]}" 2>"$WORK/refused.log"; then
        echo "$lib ($lang) reported no error for a wrong write key to $target" >&2; exit 1
      fi
      grep -q "401\|nauthorized" "$WORK/refused.log" \
        || { echo "$lib ($lang) with a wrong key to $target: no 401 in $(cat "$WORK/refused.log")" >&2; exit 1; }
      check_lead "$BASE" "$wrong" absent
      echo "  $target: a wrong write key was refused (401) and stored nothing"
    done
  done
done

# no kept call holds a write key: serve's journal, and the table's history as exported
grep -q "Form Submitted" "$WORK/journal.jsonl"
! grep -q -e writeKey -e "$KEY_SEGMENT" -e "$KEY_RUDDER" "$WORK/journal.jsonl" || { echo "serve's journal keeps a write key" >&2; exit 1; }
"$LEADSCORE" dynamodb export --events "$WORK/export.jsonl" >/dev/null
[ "$(grep -c . "$WORK/export.jsonl")" = 12 ] || { echo "the table keeps $(grep -c . "$WORK/export.jsonl") calls, not 12" >&2; exit 1; }
! grep -q -e writeKey -e "$KEY_SEGMENT" -e "$KEY_RUDDER" "$WORK/export.jsonl" || { echo "the table keeps a write key" >&2; exit 1; }
echo "sdk round trips: ok (4 libraries x serve and score; wrong keys refused; no write key kept)"

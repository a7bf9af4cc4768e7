#!/usr/bin/env bash
# Load benchmark: `leadscore serve` (embedded journal) and the `score` function (under
# `cargo lambda watch`, 16 instances at most, on DynamoDB Local), each driven by CLIENTS
# concurrent signed senders for SECONDS (bench/load, the `leadscore-load` client), then read
# back lead by lead: every acknowledged call counted once (0 lost, 0 double-counted). Then the
# same under `kill -9`: serve killed mid-load and restarted on its journal; the score
# function's instances killed mid-load (cargo lambda starts new ones). Senders send a call
# again after a 429/503 or a lost connection until it is acknowledged, as senders do.
#
# Usage: bench/load.sh [SECONDS] [CLIENTS]      (defaults 60 and 16; prints JSON lines)
# Needs what .ci/install-test-deps installs (DynamoDB Local, Java, cargo-lambda).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${1:-60}
CLIENTS=${2:-16}
KILL_SECONDS=${KILL_SECONDS:-20}
source "$ROOT/tests/lambda/local.sh"

cargo build --release -p leadscore-cli -p leadscore-load
# the score binary as `cargo lambda watch` builds it (alone, so with its own features), so
# that the watch below starts at once instead of rebuilding it under load
cargo build --release --bin score
LEADSCORE=$ROOT/target/release/leadscore
LOAD=$ROOT/target/release/leadscore-load
echo "{\"machine\": \"$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GB\", \"clients\": $CLIENTS, \"seconds\": $SECONDS_EACH}"

# Local settings only: a secret and a token made for this run.
export LEADSCORE_WEBHOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export LEADSCORE_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')

# ---- serve ----------------------------------------------------------------------------
SERVE_PORT=$(free_port)
start_serve() {
  "$LEADSCORE" serve --port "$SERVE_PORT" --data "$WORK/journal.jsonl" >>"$WORK/serve.log" 2>&1 &
  SERVE_PID=$!
  PIDS+=($SERVE_PID)
  wait_port "$SERVE_PORT" 30
}
start_serve
SERVE=http://127.0.0.1:$SERVE_PORT
echo "{\"phase\": \"serve\", \"send\": $("$LOAD" send --url "$SERVE" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --run serve --acked "$WORK/serve.json")}"
echo "{\"phase\": \"serve\", \"verify\": $("$LOAD" verify --url "$SERVE" --acked "$WORK/serve.json")}"

"$LOAD" send --url "$SERVE" --clients "$CLIENTS" --seconds "$KILL_SECONDS" --run servekill \
  --acked "$WORK/servekill.json" >"$WORK/servekill.out" &
SENDER=$!
sleep $((KILL_SECONDS / 2))
kill -9 "$SERVE_PID"
sleep 1
start_serve
wait "$SENDER"
echo "{\"phase\": \"serve, kill -9 and restart\", \"send\": $(cat "$WORK/servekill.out")}"
echo "{\"phase\": \"serve, kill -9 and restart\", \"verify\": $("$LOAD" verify --url "$SERVE" --acked "$WORK/serve.json" --acked "$WORK/servekill.json")}"
kill "$SERVE_PID" 2>/dev/null || true

# ---- score on DynamoDB Local ----------------------------------------------------------
start_dynamodb_local
export LEADSCORE_TABLE=leadscore-load
"$LEADSCORE" dynamodb create-table >/dev/null

INVOKE_PORT=$(free_port)
start_watch() {
  cargo lambda watch --release --bin score --invoke-port "$INVOKE_PORT" --concurrency "$CLIENTS" \
    --env-var "LEADSCORE_TABLE=$LEADSCORE_TABLE,LEADSCORE_RULES=$PWD/rules/b2b-saas,LEADSCORE_WEBHOOK_SECRET=$LEADSCORE_WEBHOOK_SECRET,LEADSCORE_API_TOKEN=$LEADSCORE_API_TOKEN,AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL,AWS_REGION=$AWS_REGION,AWS_ACCESS_KEY_ID=local,AWS_SECRET_ACCESS_KEY=local,RUST_LOG=warn" \
    >>"$WORK/watch.log" 2>&1 &
  WATCH_PID=$!
  PIDS+=($WATCH_PID)
  wait_port "$INVOKE_PORT" 600
}
start_watch
SCORE=http://127.0.0.1:$INVOKE_PORT/lambda-url/score
# start the instances (cold starts are not what this measures)
"$LOAD" send --url "$SCORE" --clients "$CLIENTS" --seconds 3 --run warm --acked "$WORK/warm.json" >/dev/null
echo "{\"phase\": \"score\", \"send\": $("$LOAD" send --url "$SCORE" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --run score --acked "$WORK/score.json")}"
echo "{\"phase\": \"score\", \"verify\": $("$LOAD" verify --url "$SCORE" --acked "$WORK/score.json")}"

"$LOAD" send --url "$SCORE" --clients "$CLIENTS" --seconds "$KILL_SECONDS" --run scorekill \
  --acked "$WORK/scorekill.json" >"$WORK/scorekill.out" &
SENDER=$!
sleep $((KILL_SECONDS / 2))
# every running instance of the function dies at once, mid-request, and the emulator with
# them (cargo lambda starts no new instance for one killed outside it); then a new one on the
# same port, as a fresh deployment would come up. cargo runs each instance as
# `target/release/score`.
INSTANCE='(^|/)target/release/score$'
KILLED=$(pgrep -fc "$INSTANCE" || true)
kill -9 "$WATCH_PID" || true
pkill -9 -f "$INSTANCE" || true
if [ "${KILLED:-0}" -eq 0 ]; then echo "no instance of the score function was running" >&2; exit 1; fi
sleep 1
start_watch
wait "$SENDER"
echo "{\"phase\": \"score, $KILLED instances and the emulator killed -9, restarted\", \"send\": $(cat "$WORK/scorekill.out")}"
echo "{\"phase\": \"score, killed -9 and restarted\", \"verify\": $("$LOAD" verify --url "$SCORE" --acked "$WORK/score.json" --acked "$WORK/scorekill.json")}"

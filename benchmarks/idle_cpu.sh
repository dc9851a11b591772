#!/usr/bin/env bash
# CPU of a live job fed a trickle of events: `bash benchmarks/idle_cpu.sh [RATE] [SECONDS]`.
# Starts its own broker (port 29392, folder .local-kafka-idle), 4 input partitions, the
# job on 1 process with the shipped defaults, the generator at RATE events/s (default 5);
# after a 10 s warm-up it reads the job's CPU time from /proc over SECONDS (default 30)
# and prints it as a share of one core. Issue 10's target: under 5% at 5 events/s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
RATE=${1:-5}
SECONDS_MEASURED=${2:-30}
DIR=.local-kafka-idle
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29392 LOG_LEVEL=warning
$PY -m dataflow kafka start --dir "$DIR" --port 29392 >/dev/null
trap '[ -n "${gen:-}" ] && kill "$gen" 2>/dev/null; [ -n "${job:-}" ] && kill "$job" 2>/dev/null; wait 2>/dev/null; $PY -m dataflow kafka stop --dir "$DIR" >/dev/null' EXIT
$PY -m dataflow kafka create-topics --dir "$DIR" --partitions 4 >/dev/null
if [ "$RATE" -gt 0 ]; then $PY -m dataflow generate --rate "$RATE" --partitions 4 >/dev/null 2>&1 & gen=$!; fi
$PY -m dataflow run --processes 1 >/dev/null 2>&1 & job=$!
sleep 10
worker=$(pgrep -P "$job" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }
before=$(ticks); sleep "$SECONDS_MEASURED"; after=$(ticks)
hz=$(getconf CLK_TCK)
awk -v t=$((after - before)) -v hz="$hz" -v s="$SECONDS_MEASURED" -v r="$RATE" \
    'BEGIN { printf "live job at %d events/s: %.1f%% of one core (%.2f CPU s in %d s)\n", r, 100 * t / hz / s, t / hz, s }'

#!/usr/bin/env bash
# The whole product on this machine, no Docker: a local Apache Kafka (KRaft), the
# generator, the dataflow on two processes, and what comes out of it.
#   make demo              (or: bash scripts/demo.sh, with the .venv built by `make venv`)
# The broker keeps running afterwards, for more runs by hand; the demo's last lines say so
# and how to stop it (python -m dataflow kafka stop), also when a step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
EVENTS=${EVENTS:-5000}
export EXCLUDED_LOCALES=${EXCLUDED_LOCALES:-RU}
export LOG_LEVEL=${LOG_LEVEL:-warning}
summaries=$(mktemp -d)

step() { printf '\n== %s\n' "$*"; }

still_running() {
    local status
    status=$($PY -m dataflow kafka status 2>/dev/null) || return 0
    step "Left running: the Kafka broker ${status#running }"
    echo "   more by hand: $PY -m dataflow generate --rate 50   and   $PY -m bytewax.run dataflow.flow"
    echo "   stop it with: $PY -m dataflow kafka stop   (or: make kafka-stop)"
}
trap 'rm -rf "$summaries"; still_running' EXIT

step "1. Apache Kafka on 127.0.0.1:9092 (the first start downloads the jars with Maven)"
$PY -m dataflow kafka start
$PY -m dataflow kafka create-topics --partitions 3

step "2. $EVENTS login events, some of them bad, late or from an excluded locale"
$PY -m dataflow generate --rate 0 --count "$EVENTS" --partitions 3 \
    --missing-field 0.01 --wrong-type 0.01 --malformed 0.01 --late 0.01 --excluded-locale 0.05

step "3. The dataflow on 2 processes, stopping at the end of what is in the topic"
STOP_AT_END=true RUN_SUMMARY_DIR="$summaries" $PY -m dataflow run --processes 2
$PY - "$summaries" <<'PYEOF'
import json, pathlib, sys
total = {"consumed": 0, "processed": 0, "filtered": 0, "dead_lettered": 0}
for path in pathlib.Path(sys.argv[1]).glob("*.json"):
    snap = json.loads(path.read_text())
    for key in total:
        value = snap[key]
        total[key] += sum(value.values()) if isinstance(value, dict) else value
print(", ".join(f"{k}: {v}" for k, v in total.items()))
ok = total["consumed"] == total["processed"] + total["filtered"] + total["dead_lettered"]
print("consumed == processed + filtered + dead-lettered:", ok)
PYEOF

step "4. Processed records (processed-user-login), the first 2, as JSON"
$PY -m dataflow.show processed --limit 2
step "5. Logins per event-time window (user-login-counts), the last 5 windows"
$PY -m dataflow.show counts --limit 5
step "6. Late logins (user-login-late): older than their partition's newest event by more than ALLOWED_LATENESS_SECONDS"
$PY -m dataflow.show late --limit 10
step "7. Dead letters by reason (user-login-dlq)"
$PY -m dataflow dlq summary

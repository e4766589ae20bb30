#!/usr/bin/env bash
# Crash-safety stress: kill a journaling `cep run` with SIGKILL many times at
# random moments; after each kill the journal must replay (every complete
# beat), and the next run must recover it. The test suite does this 20
# times (tests/tests/journal.rs); this script does it as often as asked.
#
#   bash tests/stress-kill.sh [KILLS=200] [DATA_DIR=target/stress-kill]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-200}
data=${2:-target/stress-kill}
cargo build -q --release -p cep-host --bin cep
cep=target/release/cep
rm -rf "$data"
for i in $(seq 1 "$kills"); do
    "$cep" run --beats 100000000 --rate 5000 --fsync beat --data-dir "$data" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$(( RANDOM % 300 + 10 ))"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    if ! "$cep" replay --verify "$data" >/tmp/cep-stress-replay.log 2>&1; then
        echo "kill $i: replay failed:"
        cat /tmp/cep-stress-replay.log
        exit 1
    fi
done
"$cep" run --beats 10 --data-dir "$data" >/dev/null
"$cep" replay --verify "$data"
echo "stress: $kills kills, every replay verified"

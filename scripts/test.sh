#!/usr/bin/env bash
# The README's test command: installs what it needs, checks format, lint and types,
# runs the whole suite against real etcd, namespaces and devices, and ends with the
# line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh || exit 2

static_failed=0
deno fmt --check >/dev/null 2>&1 || { echo "deno fmt --check: not clean (run: deno fmt)"; static_failed=1; }
deno lint >/dev/null 2>&1 || { echo "deno lint: not clean (run: deno lint)"; deno lint 2>&1 | tail -n 20; static_failed=1; }
deno task check >/dev/null 2>&1 || { echo "deno check: type errors"; deno task check 2>&1 | tail -n 20; static_failed=1; }

log=$(mktemp)
# A hung test must not hold CI forever: the whole run stays under 20 minutes.
timeout --kill-after=30 17m deno task test 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Deno's summary: "ok | 12 passed (30 steps) | 0 failed | 1 ignored (20s)".
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| ' | tail -n 1)
rm -f "$log"
num() { echo "$summary" | grep -oE "[0-9]+ $1" | head -n1 | grep -oE '^[0-9]+' || echo 0; }
passed=$(num passed); failed=$(num failed); ignored=$(num ignored)
steps_passed=$(echo "$summary" | grep -oE 'passed \([0-9]+ steps?\)' | grep -oE '[0-9]+' || echo 0)
steps_failed=$(echo "$summary" | grep -oE 'failed \([0-9]+ steps?\)' | grep -oE '[0-9]+' || echo 0)
passed=$((passed + steps_passed)); failed=$((failed + steps_failed))
if [ "$static_failed" -ne 0 ]; then failed=$((failed + 1)); status=1; fi
if [ -z "$summary" ] && [ "$status" -eq 0 ]; then status=1; fi

echo "$passed passed, $failed failed, $ignored skipped"
exit "$status"

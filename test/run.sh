#!/usr/bin/env bash
# `npm test`: runs the whole suite with tap (options from package.json). With arguments, runs
# what they name (`npm test -- test/unit/drf/*.test.ts`). Without, runs every file but the
# multi-host test two at a time, then the multi-host test alone: it runs three NATS nodes,
# three masters, three agents and the CI service on the machine's cores and measures
# failover across them, which another test file beside it slowed down past its bounds.
# When anything fails, the failing files and assertions, each with the first lines of its
# diagnostic, are printed again at the very end, so that the tail of a long CI log says what
# failed.
set -uo pipefail
cd "$(dirname "$0")/.."
SOLO=test/integration/deploy/multihost.test.ts
log=$(mktemp /tmp/regatta-test.XXXXXX)
trap 'rm -f "$log"' EXIT

rc=0
run() {
  npx tap "$@" 2>&1 | tee -a "$log"
  local r=${PIPESTATUS[0]}
  if [ "$r" -ne 0 ]; then rc=$r; fi
}
if [ $# -gt 0 ]; then
  run "$@"
else
  run --exclude "$SOLO"
  run --jobs 1 "$SOLO"
fi

if [ "$rc" -ne 0 ]; then
  echo
  echo "# ===== npm test failed (exit $rc); what failed: ====="
  # Each "not ok" line (any depth; todos left out), then its YAML diagnostic, at most 24 lines.
  awk '
    /^[[:space:]]*not ok .*# TODO/ { want = 0; inyaml = 0; next }
    /^[[:space:]]*not ok / { print; shown = 0; inyaml = 0; want = 1; next }
    want && /^[[:space:]]*---[[:space:]]*$/ { inyaml = 1 }
    want && inyaml {
      if (shown < 24) print
      shown++
      if ($0 ~ /^[[:space:]]*\.\.\.[[:space:]]*$/) { want = 0; inyaml = 0 }
      next
    }
    want && !inyaml { want = 0 }
  ' "$log" | head -n 400
  grep -aE "^# (\{ total|time=)" "$log" | tail -n 4
fi
exit "$rc"

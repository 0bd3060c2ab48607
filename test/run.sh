#!/usr/bin/env bash
# `npm test`: runs the whole suite with tap (options from package.json, extra
# arguments passed on). When it fails, the failing files and assertions, each with
# the first lines of its diagnostic, are printed again at the very end, so that the
# tail of a long CI log says what failed.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/regatta-test.XXXXXX)
trap 'rm -f "$log"' EXIT
npx tap "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  echo
  echo "# ===== npm test failed (exit $rc); what failed: ====="
  # Each "not ok" line (any depth), then its YAML diagnostic, at most 24 lines of it.
  awk '
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
  grep -E "^# (\{ total|time=|failed)" "$log" | tail -n 3
fi
exit "$rc"

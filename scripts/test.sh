#!/usr/bin/env bash
# The whole check, from a fresh Debian machine: set-up, typecheck, lint + format, generated-file drift, tests.
# Every step runs even when an earlier one failed, so CI always reports test counts. The exit status is non-zero
# when any step failed, and the last line printed is always `N passed, N failed` (from vitest's JSON report).
# Extra arguments go to vitest, e.g. `scripts/test.sh libs/events` runs only the tests whose path matches.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT_DIR="$ROOT/.ci/out"
REPORT="$OUT_DIR/vitest.json"
mkdir -p "$OUT_DIR"
rm -f "$REPORT" # never count a previous run's results

failed=()
summary=()
say() { printf '[test] %s\n' "$*"; }

# The last line, whatever happens after this point (a failed set-up included): counts from this run's report.
print_counts() {
  local counts="0 passed, 0 failed"
  if [ -f "$REPORT" ] && command -v node >/dev/null 2>&1; then
    # A file that fails outside any test (import error, failing hook) counts in no test; name it above the line.
    counts="$(node -e '
      const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"))
      for (const f of r.testResults ?? []) {
        if (f.status === "failed" && !(f.assertionResults ?? []).some((a) => a.status === "failed")) {
          const why = String(f.message ?? "").split("\n")[0]
          console.log(`[test] file failed outside its tests: ${require("node:path").relative(process.cwd(), f.name)}: ${why}`)
        }
      }
      console.log(`${r.numPassedTests ?? 0} passed, ${r.numFailedTests ?? 0} failed`)
    ' "$REPORT" 2>/dev/null)" || counts="0 passed, 0 failed"
  fi
  printf '%s\n' "$counts"
}
trap print_counts EXIT

# Set-up runs under its own `set -e`: if it cannot complete, nothing below can run, so stop here (non-zero).
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
set +e # from here on every step runs; failures are tallied

step() {
  local name="$1"
  shift
  say "── $name: $*"
  local start=$SECONDS
  "$@"
  local rc=$?
  if [ "$rc" -eq 0 ]; then
    summary+=("ok       $name ($((SECONDS - start))s)")
  else
    summary+=("FAILED   $name (exit $rc, $((SECONDS - start))s)")
    failed+=("$name")
  fi
  return 0
}

skip() {
  say "── $1: skipped ($2)"
  summary+=("skipped  $1 ($2)")
}

step typecheck tsc -p tsconfig.json --noEmit
# Biome styles its diagnostics even into a pipe, which turns CI logs into escape soup; plain text unless a terminal.
biome_colors=()
[ -t 2 ] || biome_colors=(--colors=off)
step lint biome ci "${biome_colors[@]}" .

# The drift check of schemas/ runs whatever file package.json's schemas:check names; skip until it exists.
schemas_cli="$(node -p 'const s = require("./package.json").scripts?.["schemas:check"] ?? ""; (s.match(/\S+\.ts\b/) ?? [""])[0]')"
if [ -n "$schemas_cli" ] && [ -f "$schemas_cli" ]; then
  step schemas npm run --silent schemas:check
else
  skip schemas "${schemas_cli:-schemas:check script} does not exist yet"
fi

if [ -f libs/natsconf/src/cli.ts ]; then
  step natsconf node libs/natsconf/src/cli.ts --check
else
  skip natsconf "libs/natsconf/src/cli.ts does not exist yet"
fi

# Policy as code: every bundle validates against the schema, and every policies/tests case holds.
step "policy check" node cli/src/main.ts policy check
step "policy test" node cli/src/main.ts policy test

step vitest vitest run --reporter=default --reporter=json --outputFile="$REPORT" "$@"
if [ ! -f "$REPORT" ]; then
  say "vitest wrote no report at ${REPORT#"$ROOT"/}"
  # A run that produced no report did not pass, whatever its exit status said.
  [[ " ${failed[*]} " == *" vitest "* ]] || failed+=("vitest")
fi

say "── summary"
for line in "${summary[@]}"; do say "   $line"; done
if [ ${#failed[@]} -gt 0 ]; then
  say "failed: ${failed[*]}"
  exit 1
fi
exit 0

#!/usr/bin/env bash
# The main job on the bundled example (examples/valencia/: 22 synthetic children with sJIA
# treated with anakinra): a fresh store with the events and their documented amendments,
# one patient's state at a date as the record stands now and as it stood before a
# correction, the derivation of one outcome, and a check of the hash chain.
set -euo pipefail
cd "$(dirname "$0")/.."
export TIMELINE_STORE=$(mktemp -d)/valencia.duckdb
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  rule() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  rule() { printf '\n== %s\n' "$*"; }
fi

rule "Load the Valencia example: events.csv as one batch, then 5 corrections and 1 retraction"
out=$(python examples/valencia/load.py --store "$TIMELINE_STORE")
echo "$out"
before=$(echo "$out" | sed -n 's/.*--as-known-at \([^ ]*\).*/\1/p' | head -1)

if [ -f examples/valencia/cohort.yaml ] && timeline cohort --help >/dev/null 2>&1; then
  rule "The study table (every cell n/N with its denominator)"
  timeline cohort run examples/valencia/cohort.yaml
fi

rule "V09 six months after the first anakinra dose (2007-04-03), as the record stands now"
timeline state V09 --at 2007-04-03 --rule active_arthritis --rule complete_response --rule anakinra_dose_mg_kg_day

rule "The same, as known before the joint counts were corrected (--as-known-at $before)"
timeline state V09 --at 2007-04-03 --rule active_arthritis --rule complete_response --as-known-at "$before"

rule "Why V09 is a complete responder at 6 months"
timeline explain V09 complete_response --at 2007-04-03

rule "Who changed V09's record, when and why"
timeline events V09 --kind joint_exam --from 2007-03-01 --to 2007-04-30 --history

rule "Tamper check"
timeline verify

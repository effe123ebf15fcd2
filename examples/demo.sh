#!/usr/bin/env bash
# The main job on the bundled example: a fresh store, the example ingested, a timeline shown,
# a correction and a retraction appended, the record as it stood before them, and a verify.
set -euo pipefail
cd "$(dirname "$0")/.."
store=$(mktemp -d)/demo.duckdb
export TIMELINE_STORE=$store TIMELINE_AUTHOR=demo
timeline init
timeline ingest examples/events.csv
timeline patients
before=$(date -u +%Y-%m-%dT%H:%M:%S.%N)
sleep 0.01
timeline correct p1-crp2 --set value=5 --reason "transcription error"
timeline retract p1-rash1 --reason "entered for the wrong patient"
timeline events P001 --history
echo "As known before the correction and retraction ($before):"
timeline events P001 --kind lab --kind finding --as-known-at "$before"
timeline verify

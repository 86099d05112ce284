#!/usr/bin/env bash
# Report a test-cluster job's state as Snakemake expects: running, success or failed.
set -euo pipefail
state=".snakemake/test-cluster"
id="$1"
if [[ -f "$state/$id.exit" ]]; then
  if [[ "$(cat "$state/$id.exit")" == "0" ]]; then echo success; else echo failed; fi
elif [[ -f "$state/$id.pid" ]] && kill -0 "$(cat "$state/$id.pid")" 2> /dev/null; then
  echo running
elif [[ -f "$state/$id.pid" ]]; then
  # the process is gone without an exit file: it was killed
  echo failed
else
  echo failed
fi

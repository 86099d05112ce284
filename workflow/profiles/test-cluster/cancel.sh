#!/usr/bin/env bash
# Cancel test-cluster jobs: kill each job's process group.
state=".snakemake/test-cluster"
for id in "$@"; do
  if [[ -f "$state/$id.pid" ]]; then
    pkill -TERM -P "$(cat "$state/$id.pid")" 2> /dev/null || true
    kill -TERM "$(cat "$state/$id.pid")" 2> /dev/null || true
  fi
done

#!/usr/bin/env bash
# Submit a Snakemake jobscript "to the cluster": run it in the background on this machine.
# Prints the job id (what sbatch would print). State lives in .snakemake/test-cluster/.
set -euo pipefail
jobscript="${!#}"
state=".snakemake/test-cluster"
mkdir -p "$state"
id="job$(date +%s%N)$$"
echo "$id $jobscript" >> "$state/submissions.log"
cp "$jobscript" "$state/$id.sh"  # kept for inspection: the scheduler deletes its copy
(
  bash "$jobscript" > "$state/$id.out" 2>&1
  echo $? > "$state/$id.exit.tmp" && mv "$state/$id.exit.tmp" "$state/$id.exit"
) < /dev/null > /dev/null 2>&1 &
echo $! > "$state/$id.pid"
echo "$id"

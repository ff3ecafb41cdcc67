#!/bin/bash
#SBATCH --job-name={jobName}
{sbatchDirectives!raw}
# harvester-edge pilot job: worker {workerID} of Harvester {harvesterID}, queue {pandaQueueName}.
# One allocation of {nNode} node(s) (level 2); one srun step starts the per-node launcher on
# every node, which runs {pilotsPerNode} pilot(s) side by side (level 1).  At the end this
# script writes worker-summary.json and exits with: 0 all pilots ok; {exitCvmfs} CVMFS check
# failed on a node; else the first failing pilot's exit code; {exitSetup} set-up failed;
# {exitLost} pilots left no end record.  (In the template file, literal braces are written doubled.)
set -u

HEDGE_WORK_DIR={workDirShell!raw}
HEDGE_NODES={nNode}
HEDGE_PPN={pilotsPerNode}
HEDGE_EXIT_CVMFS={exitCvmfs}
HEDGE_EXIT_SETUP={exitSetup}
HEDGE_EXIT_LOST={exitLost}
HEDGE_HARVESTER_ID={harvesterID}
HEDGE_WORKER_ID={workerID}
HEDGE_JOB_NAME={jobName}
HEDGE_QUEUE={pandaQueueName}
HEDGE_LAUNCHER=$HEDGE_WORK_DIR/{launcherFile}
HEDGE_SUMMARY=$HEDGE_WORK_DIR/{summaryFile}
HEDGE_END_WAIT=10  # seconds to wait for the end records of signalled pilots

hedge_log() {{ echo "harvester-edge: $*"; }}

hedge_json() {{  # print $1 as a JSON string
  local s=$1
  s=${{s//\\/\\\\}}
  s=${{s//\"/\\\"}}
  s=${{s//$'\t'/ }}
  printf '"%s"' "$s"
}}

hedge_join() {{  # GLOB...: the one-line JSON files, comma separated
  local f sep=
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf '%s' "$sep"
    tr -d '\n' <"$f"
    sep=,
  done
}}

hedge_summary() {{  # STEP_RC: write worker-summary.json, set HEDGE_RC
  local step_rc=$1 expected=$(( HEDGE_NODES * HEDGE_PPN )) finished=0 failed=0 first=
  local end node_index slot rc cvmfs= f line node
  while read -r end node_index slot rc; do
    finished=$(( finished + 1 ))
    if [ "$rc" != 0 ]; then
      failed=$(( failed + 1 ))
      [ -n "$first" ] || first=$rc
    fi
  done < <(cat "$HEDGE_WORK_DIR"/pilots/*.exit 2>/dev/null | sort -n -k1,1 -k2,2 -k3,3)
  for f in "$HEDGE_WORK_DIR"/nodes/*.cvmfs-error; do
    [ -f "$f" ] || continue
    read -r line <"$f"
    node=${{f##*/}}
    cvmfs="$cvmfs${{cvmfs:+; }}${{node%.cvmfs-error}}: $line"
  done
  if [ -n "$cvmfs" ]; then HEDGE_RC=$HEDGE_EXIT_CVMFS
  elif [ -n "$first" ]; then HEDGE_RC=$first
  elif [ "$finished" -lt "$expected" ]; then HEDGE_RC=$HEDGE_EXIT_LOST
  else HEDGE_RC=0
  fi
  {{
    printf '{{"version": 1, "harvester_id": %s, "worker_id": %s, "job_name": %s, "queue": %s,\n' \
      "$(hedge_json "$HEDGE_HARVESTER_ID")" "$HEDGE_WORKER_ID" "$(hedge_json "$HEDGE_JOB_NAME")" \
      "$(hedge_json "$HEDGE_QUEUE")"
    printf ' "slurm_job_id": %s, "nodes_requested": %s, "pilots_per_node": %s,\n' \
      "$(hedge_json "${{SLURM_JOB_ID:-}}")" "$HEDGE_NODES" "$HEDGE_PPN"
    printf ' "expected_pilots": %s, "finished_pilots": %s, "failed_pilots": %s,\n' \
      "$expected" "$finished" "$failed"
    printf ' "exit_code": %s, "step_exit_code": %s, "end": %s,\n' "$HEDGE_RC" "$step_rc" "$(date +%s)"
    if [ -n "$cvmfs" ]; then printf ' "cvmfs_error": %s,\n' "$(hedge_json "$cvmfs")"
    else printf ' "cvmfs_error": null,\n'
    fi
    printf ' "nodes": [%s],\n' "$(hedge_join "$HEDGE_WORK_DIR"/nodes/*.json)"
    printf ' "pilots": [%s]}}\n' "$(hedge_join "$HEDGE_WORK_DIR"/pilots/*.json)"
  }} >"$HEDGE_SUMMARY.tmp" && mv -f "$HEDGE_SUMMARY.tmp" "$HEDGE_SUMMARY"
}}

hedge_unfinished() {{  # how many started pilots have no end record yet
  local f n=0
  for f in "$HEDGE_WORK_DIR"/pilots/*.json; do
    [ -f "$f" ] && [ ! -f "${{f%.json}}.exit" ] && n=$(( n + 1 ))
  done
  echo "$n"
}}

mkdir -p "$HEDGE_WORK_DIR/pilots" "$HEDGE_WORK_DIR/nodes" || {{
  hedge_log "cannot create work dir $HEDGE_WORK_DIR"; exit "$HEDGE_EXIT_SETUP"; }}
cat >"$HEDGE_LAUNCHER" <<'HEDGE_LAUNCHER_EOF' || {{
{launcherScript!raw}
HEDGE_LAUNCHER_EOF
  hedge_log "cannot write $HEDGE_LAUNCHER"; exit "$HEDGE_EXIT_SETUP"; }}

hedge_log "job ${{SLURM_JOB_ID:-?}}: $HEDGE_NODES node(s) x $HEDGE_PPN pilot(s) in $HEDGE_WORK_DIR"
# Slurm signals every process at the end of the walltime or on scancel: the pilots get it
# directly; this script keeps waiting so that the summary still gets written.
trap 'hedge_log "got SIGTERM, waiting for the pilots to end"' TERM
srun --nodes="$HEDGE_NODES" --ntasks="$HEDGE_NODES" --ntasks-per-node=1 --whole \
  --kill-on-bad-exit=0 /bin/bash "$HEDGE_LAUNCHER" &
hedge_step=$!
wait "$hedge_step"
hedge_step_rc=$?
while kill -0 "$hedge_step" 2>/dev/null; do
  wait "$hedge_step"
  hedge_step_rc=$?
done
HEDGE_RC=0
hedge_summary "$hedge_step_rc"
# srun can leave a cancelled job before every signalled pilot wrote its end record: wait a
# little for the records of pilots that started, rewriting the summary once they are in (the
# first summary stands if the job is killed meanwhile).
hedge_waited=0
while [ "$(hedge_unfinished)" -gt 0 ] && [ "$hedge_waited" -lt "$HEDGE_END_WAIT" ]; do
  sleep 1
  hedge_waited=$(( hedge_waited + 1 ))
done
[ "$hedge_waited" = 0 ] || hedge_summary "$hedge_step_rc"
hedge_log "srun step exit $hedge_step_rc; worker exit code $HEDGE_RC; summary $HEDGE_SUMMARY"
exit "$HEDGE_RC"

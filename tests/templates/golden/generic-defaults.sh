#!/bin/bash
#SBATCH --job-name=hedge-CERN_central_A-TEST_QUEUE-w1
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
# harvester-edge pilot job: worker 1 of Harvester CERN_central_A, queue TEST_QUEUE.
# One allocation of 1 node(s) (level 2); one srun step starts the per-node launcher on
# every node, which runs 1 pilot(s) side by side (level 1).  At the end this
# script writes worker-summary.json and exits with: 0 all pilots ok; 64 CVMFS check
# failed on a node; else the first failing pilot's exit code; 65 set-up failed;
# 66 pilots left no end record.  (In the template file, literal braces are written doubled.)
set -u

HEDGE_WORK_DIR="/pscratch/sd/h/harvester/edge/CERN_central_A/1"
HEDGE_NODES=1
HEDGE_PPN=1
HEDGE_EXIT_CVMFS=64
HEDGE_EXIT_SETUP=65
HEDGE_EXIT_LOST=66
HEDGE_HARVESTER_ID=CERN_central_A
HEDGE_WORKER_ID=1
HEDGE_JOB_NAME=hedge-CERN_central_A-TEST_QUEUE-w1
HEDGE_QUEUE=TEST_QUEUE
HEDGE_LAUNCHER=$HEDGE_WORK_DIR/node-launcher.sh
HEDGE_SUMMARY=$HEDGE_WORK_DIR/worker-summary.json
HEDGE_END_WAIT=10  # seconds to wait for the end records of signalled pilots

hedge_log() { echo "harvester-edge: $*"; }

hedge_json() {  # print $1 as a JSON string
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

hedge_join() {  # GLOB...: the one-line JSON files, comma separated
  local f sep=
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf '%s' "$sep"
    tr -d '\n' <"$f"
    sep=,
  done
}

hedge_summary() {  # STEP_RC: write worker-summary.json, set HEDGE_RC
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
    node=${f##*/}
    cvmfs="$cvmfs${cvmfs:+; }${node%.cvmfs-error}: $line"
  done
  if [ -n "$cvmfs" ]; then HEDGE_RC=$HEDGE_EXIT_CVMFS
  elif [ -n "$first" ]; then HEDGE_RC=$first
  elif [ "$finished" -lt "$expected" ]; then HEDGE_RC=$HEDGE_EXIT_LOST
  else HEDGE_RC=0
  fi
  {
    printf '{"version": 1, "harvester_id": %s, "worker_id": %s, "job_name": %s, "queue": %s,\n' \
      "$(hedge_json "$HEDGE_HARVESTER_ID")" "$HEDGE_WORKER_ID" "$(hedge_json "$HEDGE_JOB_NAME")" \
      "$(hedge_json "$HEDGE_QUEUE")"
    printf ' "slurm_job_id": %s, "nodes_requested": %s, "pilots_per_node": %s,\n' \
      "$(hedge_json "${SLURM_JOB_ID:-}")" "$HEDGE_NODES" "$HEDGE_PPN"
    printf ' "expected_pilots": %s, "finished_pilots": %s, "failed_pilots": %s,\n' \
      "$expected" "$finished" "$failed"
    printf ' "exit_code": %s, "step_exit_code": %s, "end": %s,\n' "$HEDGE_RC" "$step_rc" "$(date +%s)"
    if [ -n "$cvmfs" ]; then printf ' "cvmfs_error": %s,\n' "$(hedge_json "$cvmfs")"
    else printf ' "cvmfs_error": null,\n'
    fi
    printf ' "nodes": [%s],\n' "$(hedge_join "$HEDGE_WORK_DIR"/nodes/*.json)"
    printf ' "pilots": [%s]}\n' "$(hedge_join "$HEDGE_WORK_DIR"/pilots/*.json)"
  } >"$HEDGE_SUMMARY.tmp" && mv -f "$HEDGE_SUMMARY.tmp" "$HEDGE_SUMMARY"
}

hedge_unfinished() {  # how many started pilots have no end record yet
  local f n=0
  for f in "$HEDGE_WORK_DIR"/pilots/*.json; do
    [ -f "$f" ] && [ ! -f "${f%.json}.exit" ] && n=$(( n + 1 ))
  done
  echo "$n"
}

mkdir -p "$HEDGE_WORK_DIR/pilots" "$HEDGE_WORK_DIR/nodes" || {
  hedge_log "cannot create work dir $HEDGE_WORK_DIR"; exit "$HEDGE_EXIT_SETUP"; }
cat >"$HEDGE_LAUNCHER" <<'HEDGE_LAUNCHER_EOF' || {
#!/bin/bash
# harvester-edge per-node launcher (written by the batch script, run once per node by srun).
# 1. check that CVMFS and the pilot runtime are readable, with a timeout (automount can hang);
#    if not, optionally re-run itself inside cvmfsexec or a container and check again;
# 2. start 1 pilot(s) side by side, each in its own dir with its cores and GPUs;
# 3. write one JSON record per pilot (start, end, node, slot, exit code) and wait for all.
# (In the template file, literal braces are written doubled: it is rendered like str.format.)
set -u

HEDGE_WORK_DIR="/pscratch/sd/h/harvester/edge/CERN_central_A/1"
HEDGE_PPN=1
HEDGE_CORES_PER_PILOT=1
HEDGE_GPUS_PER_PILOT=0
HEDGE_GPU_VAR=''
HEDGE_BIND_CORES=0
HEDGE_GTAG_BASE=hedge-CERN_central_A-TEST_QUEUE-w1
HEDGE_CVMFS_ROOT=/cvmfs
HEDGE_CVMFS_REPOS=atlas.cern.ch
HEDGE_CVMFS_TIMEOUT=60
HEDGE_CVMFS_FALLBACK=none
HEDGE_CVMFSEXEC=''
HEDGE_CONTAINER_IMAGE=''
HEDGE_CONTAINER_OPTS=()
HEDGE_PILOT_WRAPPER=/cvmfs/atlas.cern.ch/repo/sw/PandaPilotWrapper/latest/runpilot2-wrapper.sh
HEDGE_PILOT_SETUP=/cvmfs/atlas.cern.ch/repo/ATLASLocalRootBase/user/atlasLocalSetup.sh
HEDGE_PILOT_CMD=(/cvmfs/atlas.cern.ch/repo/sw/PandaPilotWrapper/latest/runpilot2-wrapper.sh -s TEST_QUEUE -r TEST_QUEUE -q TEST_QUEUE -j managed -i PR -w generic --pilot-user ATLAS --url https://pandaserver.cern.ch --harvester-submit-mode PULL --allow-same-user=False)
HEDGE_EXIT_CVMFS=64
HEDGE_EXIT_SETUP=65

HEDGE_SELF=$0
HEDGE_STAGE=${1:-native}
HEDGE_NODE=${SLURMD_NODENAME:-$(hostname -s)}
HEDGE_NODE_INDEX=${SLURM_NODEID:-0}
HEDGE_PROBE_OUT=$HEDGE_WORK_DIR/nodes/.probe-$HEDGE_NODE.$$
HEDGE_REASON=
hedge_term=0

hedge_log() { echo "harvester-edge [$HEDGE_NODE]: $*"; }

hedge_json() {  # print $1 as a JSON string
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

hedge_probe() {  # LIMIT CMD...: run CMD with a deadline even if it hangs unkillably
  local limit=$1 pid ticks=0
  shift
  timeout -k 2 "$limit" "$@" >"$HEDGE_PROBE_OUT" 2>/dev/null </dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    [ "$ticks" -lt $(( (limit + 3) * 5 )) ] || return 124
    sleep 0.2
    ticks=$(( ticks + 1 ))
  done
  wait "$pid"
}

hedge_timed_out() { [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; }

hedge_cvmfs_check() {  # sets HEDGE_REASON (one line) and fails when CVMFS is not usable
  local repo path file rc
  if ! command -v timeout >/dev/null 2>&1; then
    HEDGE_REASON="CVMFS check impossible: no timeout command on the node"
    return 1
  fi
  for repo in $HEDGE_CVMFS_REPOS; do
    path=$HEDGE_CVMFS_ROOT/$repo
    hedge_probe "$HEDGE_CVMFS_TIMEOUT" ls -A "$path"
    rc=$?
    if hedge_timed_out "$rc"; then
      HEDGE_REASON="CVMFS check timed out after $HEDGE_CVMFS_TIMEOUT s listing $path (hung mount)"
      return 1
    fi
    if [ "$rc" -ne 0 ] || [ ! -s "$HEDGE_PROBE_OUT" ]; then
      HEDGE_REASON="CVMFS repository $repo not mounted or empty at $path"
      return 1
    fi
  done
  for file in "$HEDGE_PILOT_WRAPPER" "$HEDGE_PILOT_SETUP"; do
    [ -n "$file" ] || continue
    hedge_probe "$HEDGE_CVMFS_TIMEOUT" head -c 1 "$file"
    rc=$?
    if hedge_timed_out "$rc"; then
      HEDGE_REASON="CVMFS check timed out after $HEDGE_CVMFS_TIMEOUT s reading $file (hung mount)"
      return 1
    fi
    if [ "$rc" -ne 0 ]; then
      HEDGE_REASON="CVMFS file not readable: $file"
      return 1
    fi
  done
  rm -f "$HEDGE_PROBE_OUT"
}

hedge_node_record() {  # STATUS VIA REASON
  local f=$HEDGE_WORK_DIR/nodes/$HEDGE_NODE
  printf '{"node": %s, "node_index": %s, "cvmfs": %s, "via": %s, "reason": %s, "time": %s}\n' \
    "$(hedge_json "$HEDGE_NODE")" "$HEDGE_NODE_INDEX" "$(hedge_json "$1")" \
    "$(hedge_json "$2")" "$(hedge_json "$3")" "$(date +%s)" >"$f.json.tmp" &&
    mv -f "$f.json.tmp" "$f.json"
}

hedge_cvmfs_failed() {  # VIA: record the failure where the batch script looks, then exit
  rm -f "$HEDGE_PROBE_OUT"
  hedge_log "$HEDGE_REASON"
  printf '%s\n' "$HEDGE_REASON" >"$HEDGE_WORK_DIR/nodes/$HEDGE_NODE.cvmfs-error"
  hedge_node_record failed "$1" "$HEDGE_REASON"
  exit "$HEDGE_EXIT_CVMFS"
}

hedge_range() {  # FIRST COUNT: "FIRST,FIRST+1,..." (empty for COUNT 0)
  local i list=
  for (( i = $1; i < $1 + $2; i++ )); do list=$list${list:+,}$i; done
  printf '%s' "$list"
}

hedge_pilot_record() {  # SLOT INDEX START END EXIT GPUS CPUS DIR
  local f=$HEDGE_WORK_DIR/pilots/$HEDGE_NODE-slot$1
  printf '{"node": %s, "node_index": %s, "slot": %s, "pilot_index": %s, "start": %s, "end": %s, "exit_code": %s, "gpus": %s, "cpus": %s, "dir": %s, "gtag": %s, "slurm_job_id": %s, "slurm_step_id": %s}\n' \
    "$(hedge_json "$HEDGE_NODE")" "$HEDGE_NODE_INDEX" "$1" "$2" "$3" "$4" "$5" \
    "$(hedge_json "$6")" "$(hedge_json "$7")" "$(hedge_json "$8")" \
    "$(hedge_json "$HEDGE_GTAG_BASE/$HEDGE_NODE/slot$1")" \
    "$(hedge_json "${SLURM_JOB_ID:-}")" "$(hedge_json "${SLURM_STEP_ID:-}")" \
    >"$f.json.tmp" && mv -f "$f.json.tmp" "$f.json"
}

hedge_exec_pilot() {  # SLOT INDEX DIR GPUS CPUS (runs in a subshell, ends in exec)
  cd "$3" || exit "$HEDGE_EXIT_SETUP"
  unset JOB_ID
  export HARVESTER_ID=CERN_central_A
  export HARVESTER_WORKER_ID=1
  export PANDA_JSID=harvester-CERN_central_A
  export HARVESTER_QUEUE=TEST_QUEUE
  export HARVESTER_JOB_NAME=hedge-CERN_central_A-TEST_QUEUE-w1
  export ATLAS_SW_BASE=/cvmfs
  export ATLAS_LOCAL_ROOT_BASE=/cvmfs/atlas.cern.ch/repo/ATLASLocalRootBase
  export HARVESTER_WORK_DIR="$HEDGE_WORK_DIR"
  export SLURM_JOB_ID=${SLURM_JOB_ID:-} SLURM_STEP_ID=${SLURM_STEP_ID:-}
  export HARVESTER_NODE=$HEDGE_NODE HARVESTER_NODE_INDEX=$HEDGE_NODE_INDEX
  export HARVESTER_SLOT=$1 HARVESTER_PILOT_INDEX=$2 HARVESTER_PILOTS_PER_NODE=$HEDGE_PPN
  export HARVESTER_PILOT_DIR=$3 HARVESTER_GPU_IDS=$4 HARVESTER_CPU_LIST=$5
  export HARVESTER_CORES=$HEDGE_CORES_PER_PILOT HARVESTER_CVMFS_VIA=$HEDGE_STAGE
  export GTAG=$HEDGE_GTAG_BASE/$HEDGE_NODE/slot$1
  export PANDA_HOSTNAME=$HEDGE_NODE-slot$1
  if [ -n "$HEDGE_GPU_VAR" ] && [ -n "$4" ]; then export "$HEDGE_GPU_VAR=$4"; fi
  if [ "$HEDGE_BIND_CORES" = 1 ] && taskset -c "$5" true 2>/dev/null; then
    exec taskset -c "$5" "${HEDGE_PILOT_CMD[@]}" >pilot.out 2>&1 </dev/null
  fi
  exec "${HEDGE_PILOT_CMD[@]}" >pilot.out 2>&1 </dev/null
}

hedge_pilot() {  # SLOT: run one pilot and keep its record up to date
  trap 'hedge_term=1' TERM  # outlive SIGTERM to write the pilot's end record
  local slot=$1 index dir gpus cpus start rc end
  index=$(( HEDGE_NODE_INDEX * HEDGE_PPN + slot - 1 ))
  dir=$HEDGE_WORK_DIR/$HEDGE_NODE/slot$slot
  gpus=$(hedge_range $(( (slot - 1) * HEDGE_GPUS_PER_PILOT )) "$HEDGE_GPUS_PER_PILOT")
  cpus=$(( (slot - 1) * HEDGE_CORES_PER_PILOT ))-$(( slot * HEDGE_CORES_PER_PILOT - 1 ))
  start=$(date +%s)
  hedge_pilot_record "$slot" "$index" "$start" null null "$gpus" "$cpus" "$dir"
  if mkdir -p "$dir"; then
    ( hedge_exec_pilot "$slot" "$index" "$dir" "$gpus" "$cpus" )
    rc=$?
  else
    rc=$HEDGE_EXIT_SETUP
  fi
  end=$(date +%s)
  hedge_pilot_record "$slot" "$index" "$start" "$end" "$rc" "$gpus" "$cpus" "$dir"
  printf '%s %s %s %s\n' "$end" "$HEDGE_NODE_INDEX" "$slot" "$rc" \
    >"$HEDGE_WORK_DIR/pilots/$HEDGE_NODE-slot$slot.exit"
  hedge_log "pilot slot $slot ended with exit code $rc"
}

hedge_run_pilots() {  # VIA: start every slot's pilot in the background and wait for all
  local slot
  hedge_node_record ok "$1" ""
  hedge_log "CVMFS ok ($1); starting $HEDGE_PPN pilot(s)"
  trap 'hedge_term=1' TERM
  for (( slot = 1; slot <= HEDGE_PPN; slot++ )); do
    hedge_pilot "$slot" &
  done
  while [ -n "$(jobs -rp)" ]; do wait; done
  exit 0
}

hedge_fallback() {  # re-run this launcher where CVMFS should be available
  local mode=$HEDGE_CVMFS_FALLBACK
  case $mode in
    cvmfsexec)
      [ -x "$HEDGE_CVMFSEXEC" ] || { HEDGE_REASON="$HEDGE_REASON; cvmfsexec not executable: $HEDGE_CVMFSEXEC"; return 1; }
      "$HEDGE_CVMFSEXEC" $HEDGE_CVMFS_REPOS -- /bin/bash "$HEDGE_SELF" cvmfsexec ;;
    shifter)
      command -v shifter >/dev/null 2>&1 || { HEDGE_REASON="$HEDGE_REASON; shifter not found"; return 1; }
      shifter --image="$HEDGE_CONTAINER_IMAGE" ${HEDGE_CONTAINER_OPTS[@]+"${HEDGE_CONTAINER_OPTS[@]}"} \
        /bin/bash "$HEDGE_SELF" shifter ;;
    apptainer)
      command -v apptainer >/dev/null 2>&1 || { HEDGE_REASON="$HEDGE_REASON; apptainer not found"; return 1; }
      apptainer exec --bind "$HEDGE_WORK_DIR" ${HEDGE_CONTAINER_OPTS[@]+"${HEDGE_CONTAINER_OPTS[@]}"} \
        "$HEDGE_CONTAINER_IMAGE" /bin/bash "$HEDGE_SELF" apptainer ;;
    *) return 1 ;;
  esac
}

mkdir -p "$HEDGE_WORK_DIR/pilots" "$HEDGE_WORK_DIR/nodes" || exit "$HEDGE_EXIT_SETUP"
if hedge_cvmfs_check; then
  hedge_run_pilots "$HEDGE_STAGE"
fi
[ "$HEDGE_STAGE" = native ] || hedge_cvmfs_failed "$HEDGE_STAGE"
[ "$HEDGE_CVMFS_FALLBACK" != none ] || hedge_cvmfs_failed native
hedge_log "$HEDGE_REASON; trying fallback $HEDGE_CVMFS_FALLBACK"
hedge_fallback
rc=$?
[ -f "$HEDGE_WORK_DIR/nodes/$HEDGE_NODE.json" ] && exit "$rc"
case $HEDGE_REASON in
  *"not found"* | *"not executable"*) ;;
  *) HEDGE_REASON="$HEDGE_REASON; fallback $HEDGE_CVMFS_FALLBACK exited $rc before its check" ;;
esac
hedge_cvmfs_failed "$HEDGE_CVMFS_FALLBACK"

HEDGE_LAUNCHER_EOF
  hedge_log "cannot write $HEDGE_LAUNCHER"; exit "$HEDGE_EXIT_SETUP"; }

hedge_log "job ${SLURM_JOB_ID:-?}: $HEDGE_NODES node(s) x $HEDGE_PPN pilot(s) in $HEDGE_WORK_DIR"
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

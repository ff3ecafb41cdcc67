#!/usr/bin/env bash
# A real, multi-node Slurm cluster with accounting on this one machine, for tests and demos.
#
#   scripts/slurm-cluster.sh start   install (apt-get) if needed, then start munge, MariaDB,
#                                    slurmdbd, slurmctld and N emulated nodes (slurmd -N nidNNN)
#   scripts/slurm-cluster.sh stop    stop only what this script started (by pid file)
#   scripts/slurm-cluster.sh status  exit 0 when the cluster answers
#   scripts/slurm-cluster.sh env     print the SLURM_CONF line to export
#
# Idempotent: `start` on a running cluster does nothing.  Everything lives under
# $HEDGE_SLURM_DIR (default /tmp/hedge-slurm); client commands need SLURM_CONF=$DIR/etc/slurm.conf.
# Must run as root (Debian 12 packages; verified facts in shared/REAL_SLURM.md).
set -euo pipefail

DIR=${HEDGE_SLURM_DIR:-/tmp/hedge-slurm}
NODES=${HEDGE_SLURM_NODES:-4}
CPUS=${HEDGE_SLURM_CPUS:-4}
MEM=${HEDGE_SLURM_MEM_MB:-4000}
CLUSTER=${HEDGE_SLURM_CLUSTER:-hedge}
DB=hedge_slurm_acct
CONF=$DIR/etc/slurm.conf
export SLURM_CONF=$CONF

log() { printf 'slurm-cluster: %s\n' "$*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=()
  for b in munged slurmctld slurmd slurmdbd sbatch mariadbd pgrep hostname; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Slurm, munge and MariaDB (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq munge slurmctld slurmd slurm-client slurmdbd mariadb-server procps hostname >/dev/null
}

node_names() { local i; for i in $(seq 1 "$NODES"); do printf 'nid%03d\n' "$i"; done; }

write_config() {
  local host; host=$(hostname -s)
  mkdir -p "$DIR"/{etc,state,spool,run,log}
  local last; last=$(printf '%03d' "$NODES")
  cat > "$CONF" <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=5
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MaxJobCount=20000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=nid[001-$last] NodeHostname=$host NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  cat > "$DIR/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=16819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=hedge
StoragePass=hedge
StorageLoc=$DB
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
CONF
  chmod 0600 "$DIR/etc/slurmdbd.conf"
}

start_munge() {
  if pgrep -x munged >/dev/null; then return 0; fi
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey -c 2>/dev/null || /usr/sbin/create-munge-key -f; chown munge:munge /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
  touch "$DIR/run/started-munge"
}

start_mariadb() {
  if ! mysqladmin ping >/dev/null 2>&1; then
    service mariadb start >/dev/null
    touch "$DIR/run/started-mariadb"
  fi
  mysql -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
            CREATE USER IF NOT EXISTS 'hedge'@'localhost' IDENTIFIED BY 'hedge';
            GRANT ALL ON $DB.* TO 'hedge'@'localhost'; FLUSH PRIVILEGES;"
}

wait_for() { # seconds, description, command...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
}

nodes_up() {
  local n; n=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /^(idle|mix|alloc)/' | wc -l)
  [ "$n" -ge "$NODES" ]
}

cmd_status() {  # accounting included: slurmdbd alive over a dead MariaDB answers no sacct
  alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmdbd.pid" && nodes_up \
    && mysqladmin ping >/dev/null 2>&1
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
  install_packages
  if [ -f "$CONF" ] && cmd_status; then log "already running ($CONF)"; return 0; fi
  cmd_stop quiet || true
  rm -rf "$DIR/state" "$DIR/spool"
  write_config
  start_munge
  start_mariadb
  SLURM_CONF=$CONF /usr/sbin/slurmdbd
  wait_for 60 "slurmdbd" sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
  /usr/sbin/slurmctld -f "$CONF"
  wait_for 60 "slurmctld" scontrol ping
  local n
  for n in $(node_names); do /usr/sbin/slurmd -f "$CONF" -N "$n"; done
  wait_for 90 "$NODES nodes" nodes_up
  log "running: $NODES nodes; export SLURM_CONF=$CONF"
}

cmd_stop() {
  local f
  for f in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid" "$DIR/run/slurmdbd.pid"; do
    [ -f "$f" ] || continue
    alive "$f" && kill "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid" "$DIR/run/slurmdbd.pid"; do
    [ -f "$f" ] || continue
    for _ in $(seq 1 40); do alive "$f" || break; sleep 0.25; done
    alive "$f" && kill -9 "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  if [ -f "$DIR/run/started-mariadb" ]; then service mariadb stop >/dev/null 2>&1 || true; rm -f "$DIR/run/started-mariadb"; fi
  if [ -f "$DIR/run/started-munge" ]; then pkill -x munged || true
    for _ in $(seq 1 40); do pgrep -x munged >/dev/null || break; sleep 0.25; done
    rm -f "$DIR/run/started-munge"; fi
  [ "${1:-}" = quiet ] || log "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac

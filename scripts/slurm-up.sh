#!/usr/bin/env bash
# Bring up (or reuse) the single-node Slurm test scheduler with Debian's
# slurm-wlm-torque wrappers (qsub/qstat/qdel), as described in
# docs/schedulers.md and docs/reference/pbs.md section 12.
#
#   bash scripts/slurm-up.sh          # prints SLURM_CONF=<file> on its last line
#   export SLURM_CONF=$(bash scripts/slurm-up.sh | tail -1 | cut -d= -f2)
#
# Everything (config, state, logs, nodefiles) lives in $PBSVLLM_SLURM_DIR
# (default /tmp/pbsvllm-slurm). Idempotent and safe to run concurrently: if
# a cluster started from the same config answers, it is reused, never
# restarted. No systemd; the daemons run as root. Needs root.
# Stop it with: bash scripts/slurm-up.sh --down
set -euo pipefail
DIR="${PBSVLLM_SLURM_DIR:-/tmp/pbsvllm-slurm}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
mkdir -p "$DIR"
chmod 0755 "$DIR"

if [ "${1:-}" = "--down" ]; then
  for f in slurmd slurmctld; do
    if [ -s "$DIR/$f.pid" ]; then kill "$(cat "$DIR/$f.pid")" 2>/dev/null || true; fi
  done
  echo "slurm-up: stopped the daemons of $DIR"
  exit 0
fi

exec 9>"$DIR/up.lock"
flock -w 120 9 || { echo "slurm-up: another bring-up holds $DIR/up.lock for 120 s" >&2; exit 1; }

log() { echo "slurm-up: $*" >&2; }
node="$(hostname -s)"

cluster_up() {
  scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
  local st
  st="$(sinfo -h -n "$node" -o %t 2>/dev/null | head -1)"
  case "$st" in idle*|mix*|alloc*|comp*) return 0 ;; *) return 1 ;; esac
}

if [ -f "$CONF" ] && cluster_up; then
  log "reusing the running cluster ($CONF)"
  echo "SLURM_CONF=$CONF"
  exit 0
fi

command -v slurmctld >/dev/null || { log "slurmctld missing: run scripts/setup-system.sh"; exit 1; }
[ "$(id -u)" -eq 0 ] || { log "needs root (daemons run as root here)"; exit 1; }

# --- munge -----------------------------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged --force 9>&-
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || { log "munged did not start"; exit 1; }
fi

# --- config ----------------------------------------------------------------
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/nodefiles"
chmod 0777 "$DIR/nodefiles"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
plugdir=/usr/lib/x86_64-linux-gnu/slurm-wlm
[ -d "$plugdir" ] || plugdir="$(dirname "$(find /usr/lib -name spank_pbs.so | head -1)")"

cat > "$DIR/plugstack.conf" <<PLUG
required $plugdir/spank_pbs.so
PLUG

# TaskProlog: PBS_NODEFILE (one line per task slot), kept in nodefiles/<jobid>.
cat > "$DIR/taskprolog.sh" <<'TP'
#!/bin/bash
dir="$(dirname "$0")/nodefiles"
f="$dir/${SLURM_JOB_ID}"
if [ ! -s "$f" ]; then
  tmp="$(generate_pbs_nodefile 2>/dev/null)" && mv -f "$tmp" "$f" && chmod 0644 "$f"
fi
[ -s "$f" ] && echo "export PBS_NODEFILE=$f"
exit 0
TP
cat > "$DIR/epilog.sh" <<'EP'
#!/bin/bash
rm -f "$(dirname "$0")/nodefiles/${SLURM_JOB_ID}"
exit 0
EP
chmod 0755 "$DIR/taskprolog.sh" "$DIR/epilog.sh"

cat > "$CONF.tmp" <<CONF
# Written by pbsvllm scripts/slurm-up.sh: single-node test scheduler.
ClusterName=pbstest
SlurmctldHost=$node(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SchedulerType=sched/backfill
JobSubmitPlugins=pbs
PlugStackConfig=$DIR/plugstack.conf
TaskProlog=$DIR/taskprolog.sh
Epilog=$DIR/epilog.sh
MpiDefault=none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES DefaultTime=01:00:00 MaxTime=INFINITE State=UP
CONF
mv -f "$CONF.tmp" "$CONF"

# --- daemons ---------------------------------------------------------------
alive() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
if ! alive slurmctld; then
  log "starting slurmctld"
  slurmctld -f "$CONF" 9>&-   # the daemons must not inherit the lock
fi
for _ in $(seq 150); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping | grep -q 'is UP' || { log "slurmctld did not come up; see $DIR/log/slurmctld.log"; tail -20 "$DIR/log/slurmctld.log" >&2; exit 1; }
if ! alive slurmd; then
  log "starting slurmd"
  slurmd -f "$CONF" 9>&-
fi
for i in $(seq 150); do
  st="$(sinfo -h -n "$node" -o %t 2>/dev/null | head -1)"
  case "$st" in
    idle*|mix*|alloc*|comp*) break ;;
    drain*|down*)
      if [ "$i" -gt 10 ]; then scontrol update NodeName="$node" State=RESUME 2>/dev/null || true; fi ;;
  esac
  sleep 0.2
done
cluster_up || { log "node $node is not idle (state: $(sinfo -h -o %t)); see $DIR/log/slurmd.log"; tail -20 "$DIR/log/slurmd.log" >&2; exit 1; }
# Make the wrappers work without SLURM_CONF too (e.g. in plain ssh sessions).
if [ ! -e /etc/slurm/slurm.conf ]; then ln -s "$CONF" /etc/slurm/slurm.conf 2>/dev/null || true; fi
log "up: $(sinfo -h -o '%P %t %c cpus')"
echo "SLURM_CONF=$CONF"

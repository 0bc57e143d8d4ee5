#!/usr/bin/env bash
# Start (or check) a one-node SLURM cluster on this machine, so the real `sbatch` path of
# training/slurm/train_a40.sbatch can be tested without a cluster.
#
#   sudo training/slurm/local_cluster.sh          # configure + start; idempotent
#   sudo training/slurm/local_cluster.sh status   # print sinfo, exit 1 if the node is not usable
#
# Needs Debian's `slurm-wlm` and `munge` (CI: .ci/system-deps.sh), and root: slurmctld/slurmd run
# as root, munged as user munge. The node pretends to be one A40 box of the seed's shape (8 CPUs,
# 32 GB, one GPU gres without a device file) with `SlurmdParameters=config_overrides`, so the
# script's `--cpus-per-task=8 --mem=32G --gres=gpu:1` are schedulable on a 2-core CI machine.
# Process tracking is `linuxproc` and tasks are not confined (`task/none`): no cgroups needed,
# which is what works inside containers.
set -euo pipefail

CONF_DIR=${SLURM_CONF_DIR:-/etc/slurm}
NODE=$(hostname -s)
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd

die() { echo "local_cluster: $*" >&2; exit 1; }

node_ready() {
  # The node answers and is idle/mixed/allocated (not down, drained or unknown).
  local state
  state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1) || return 1
  case "$state" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

if [[ "${1:-start}" == "status" ]]; then
  sinfo -N -o '%N %P %T %c %m %G' || die "sinfo failed: slurmctld is not running"
  node_ready || die "node $NODE is not usable (see $LOG_DIR/slurmd.log)"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "run as root (slurmctld/slurmd need it)"
for cmd in munged slurmctld slurmd sbatch sinfo scontrol; do
  command -v "$cmd" >/dev/null || die "$cmd not found: apt-get install -y slurm-wlm munge"
done

# ---- munge: one shared key, daemon as user munge --------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munged did not start (see /var/log/munge/munged.log)"
fi

# ---- slurm.conf + gres.conf (rewritten only when different: a rewrite needs a reconfigure) --
install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
conf=$(cat <<EOF
# Written by training/slurm/local_cluster.sh: a one-node test cluster.
ClusterName=psyedge
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
GresTypes=gpu
MpiDefault=none
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
NodeName=$NODE CPUs=8 RealMemory=32768 Gres=gpu:1 State=UNKNOWN
PartitionName=A40 Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
gres="NodeName=$NODE Name=gpu File=/dev/null Count=1"
changed=0
if [[ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$conf" ]]; then
  printf '%s\n' "$conf" > "$CONF_DIR/slurm.conf"; changed=1
fi
if [[ "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" != "$gres" ]]; then
  printf '%s\n' "$gres" > "$CONF_DIR/gres.conf"; changed=1
fi

# ---- daemons -------------------------------------------------------------------------------
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive /run/slurmctld.pid && [[ $changed -eq 1 ]]; then
  scontrol reconfigure || true
fi
alive /run/slurmctld.pid || slurmctld
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || die "slurmctld did not come up (see $LOG_DIR/slurmctld.log)"
alive /run/slurmd.pid || slurmd
for _ in $(seq 150); do node_ready && break; sleep 0.2; done
if ! node_ready; then
  # A node left down by an earlier run (e.g. the machine rebooted) comes back on resume.
  scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
  for _ in $(seq 50); do node_ready && break; sleep 0.2; done
fi
node_ready || die "node $NODE is not idle: $(sinfo -h -N -o '%T %E'); see $LOG_DIR/slurmd.log"
sinfo -N -o '%N %P %T %c %m %G'

#!/usr/bin/env bash
# Throw-away single-node Slurm cluster (munged + slurmctld + slurmd) on loopback, with
# every file inside DIR, for integration tests. Needs root, slurm-wlm (22.05) and munge.
#
#   cluster.sh start DIR   # prints: export SLURM_CONF=DIR/etc/slurm.conf
#   cluster.sh stop DIR    # idempotent; also cleans up after a failed start
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 && ($1 == start || $1 == stop) ]] || usage
cmd=$1
[[ -d $2 ]] || { [[ $cmd == stop ]] && exit 0; mkdir -p "$2"; }
dir=$(cd "$2" && pwd)
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf

# A random port in 20000-39999 that nothing on loopback listens on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# Pids of this cluster's daemons: from the pid files, plus any daemon whose command line
# mentions DIR (one that died or hung before writing its pid file).
our_pids() {
  local f pid
  for f in "$dir"/run/*.pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    # Ignore a stale pid file pointing at an unrelated process.
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) =~ ^(slurmctld|slurmd|munged)$ ]] && echo "$pid"
  done
  pgrep -f -- "^[^ ]*(slurmctld|slurmd|munged) .*$dir" || true
}

# Those of the given pids still alive. Zombies count as gone: the daemons are reparented
# to pid 1, which may be slow to reap them.
alive() {
  local pid st
  for pid in "$@"; do
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || continue
    [[ $st != Z ]] && echo "$pid"
  done
  return 0
}

dump_logs() {
  local f
  for f in "$dir"/log/*; do
    [[ -f $f ]] && { echo "==== $f" >&2; tail -n 50 "$f" >&2; }
  done
  return 0
}

stop() {
  local pids i
  # Cancel jobs first so that slurmd reaps their slurmstepds (which do not mention DIR).
  if [[ -f $conf ]] && pgrep -f -- "^[^ ]*slurmctld .*$dir" >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
      [[ -z $(squeue -h -o %i 2>/dev/null | head -n 1) ]] && break
      sleep 0.5
    done
  fi
  pids=$(alive $(our_pids | sort -u))
  [[ -n $pids ]] && kill $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pids=$(alive $pids)
    [[ -z $pids ]] && break
    ((i == 30)) && kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
  [[ -z $pids ]] || { echo "cluster.sh: could not stop pids $pids" >&2; return 1; }
  rm -f "$dir"/run/*.pid
}

fail() {
  echo "cluster.sh: $*" >&2
  dump_logs
  stop || true
  exit 1
}

start() {
  stop
  mkdir -p "$dir"/{etc,state,spool,log,run}
  chmod 0755 "$dir" "$dir"/{etc,state,spool,log,run}
  rm -f "$dir"/log/*

  local key=$dir/etc/munge.key sock=$dir/run/munge.socket
  rm -f "$key"
  dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
  chmod 0400 "$key"
  # --force: munged refuses group/world-writable parent dirs (e.g. a non-sticky tmp).
  munged --force --key-file="$key" --socket="$sock" --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/state/munged.seed" ||
    fail "munged failed"

  # "CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=.."
  local hw ctld_port slurmd_port
  hw=$(slurmd -C | head -n 1 | cut -d' ' -f2-)
  ctld_port=$(free_port)
  until slurmd_port=$(free_port) && [[ $slurmd_port != "$ctld_port" ]]; do :; done
  cat >"$conf" <<EOF
ClusterName=danling-test
# slurmctld accepts "localhost" whatever \`hostname -s\` says; slurmd needs -N localhost.
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job is held (Reason=BeginTime) for cred_expire+1 s; the default is 120 and
# 5 the minimum. Forcing StartTime=now fails the launch with "Job credential revoked".
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=5
# Without sacct, \`scontrol show job\` is the record of finished jobs: keep them 5 minutes.
MinJobAge=300
# Reject jobs that can never run (e.g. -n3 on 2 CPUs) instead of leaving them pending.
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
NodeName=localhost $hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

  # -c: start with an empty job queue even if DIR/state is left from an old run.
  slurmctld -c -f "$conf" || fail "slurmctld failed"
  slurmd -N localhost -f "$conf" || fail "slurmd failed"

  local i state=
  for ((i = 0; i < 60; i++)); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    if [[ $state == idle ]]; then
      echo "export SLURM_CONF=$conf"
      return
    fi
    sleep 1
  done
  fail "node not idle after 60 s (sinfo: '$state')"
}

"$cmd"

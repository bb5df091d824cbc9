#!/bin/bash
# Berth's Swarm lab (docs/swarm.md#testing-on-several-nodes-on-one-machine), adapted from a worked
# recipe of the project's machines, with one change: every namespace and cgroup name starts with
# SW_PREFIX (default "sw"; the hub is "${SW_PREFIX}hub"), so several labs (one per test run) can
# exist at once. berth_testkit::swarm::Lab drives it and runs `down` when a test ends.
# N-node Docker Swarm on ONE machine, without Docker-in-Docker or --privileged; the machine's own
# Docker daemon is left untouched. A worked recipe, proven with 3-5 nodes: scheduling across nodes,
# overlay traffic across nodes, DNS round robin (tasks.NAME, endpoint_mode dnsrr), host-mode
# published ports, rescheduling after a node's dockerd is killed or cut off. Not working without
# IPVS in the kernel: service VIPs and the ingress routing mesh. Node addresses (SW_NET.N) exist
# only inside the network namespaces this script creates; reach them from the hub namespace:
#   ip netns exec swhub curl http://SW_NET.N:PORT
# Timings seen: up 3 = 3.3 s; service create -> all tasks running 1.0-1.6 s; worker dockerd killed
# (heartbeat 1 s, restart delay 0) -> tasks rescheduled 2.9 s. Tests: count tasks with
# `service ps --filter desired-state=running` (service ls shows stale tasks of a down node).
# Each node = extra dockerd in its own net+uts+mount namespace (held open by a
# `sleep infinity` holder; /run/containerd, where the host has one, hidden under a tmpfs so each
# dockerd starts its own containerd), eth0 veth -> bridge br0 in a private "swhub" netns.
# The host netns, its iptables and docker0 never change (each node gets its own
# docker0/docker_gwbridge/iptables inside its netns).
# Usage: swarm-lab.sh up [N] | down | start I | crash I | stop I | cut I | heal I
#        swarm-lab.sh d I <docker args...>     (= docker -H unix://$B/nI/docker.sock ...)
# Env: SW_BASE (/tmp/swarm) SW_NET (192.168.77) SW_IMAGES (images to load on every node, e.g. "berth-testapp:1")
#      SW_MANAGERS (1) SW_INIT_OPTS ("--dispatcher-heartbeat 1s") SW_DOCKERD_OPTS ("")
set -eu
B=${SW_BASE:-/tmp/swarm}; NET=${SW_NET:-192.168.77}; P=${SW_PREFIX:-sw}; HUB=${P}hub
d() { docker -H "unix://$B/n$1/docker.sock" "${@:2}"; }
ours() { [ -r /proc/$1/cmdline ] && tr '\0' ' ' </proc/$1/cmdline | grep -qF -- "$2"; } # PID-reuse guard
held() { [ "$(tr '\0' ' ' </proc/$1/cmdline 2>/dev/null)" = "sleep infinity " ] &&   # holder $1 is
         [ "$(stat -Lc %i /proc/$1/ns/net)" = "$(stat -Lc %i /run/netns/$2)" ]; } # inside netns $2

start() { # create (or restart) node $1
  local i=$1 n=$B/n$1 ns=$P$1 h t
  mkdir -p "$n"
  if [ ! -e /run/netns/$ns ]; then
    ip netns add $ns; ip -n $ns link set lo up
    ip -n $ns link add eth0 type veth peer name v$i netns $HUB
    ip -n $ns addr add $NET.$i/24 dev eth0; ip -n $ns link set eth0 up
    ip -n $HUB link set v$i master br0 up
  fi
  h=$(cat "$n/holder" 2>/dev/null || true)
  if [ -z "$h" ] || ! held "$h" $ns; then
    nsenter --net=/run/netns/$ns unshare --uts --mount --propagation slave sh -c \
      "hostname node$i && { [ ! -d /run/containerd ] || mount -t tmpfs swtmp /run/containerd; } && exec sleep infinity" </dev/null &
    h=$!; echo $h >"$n/holder"
    for t in $(seq 100); do held $h $ns && break; sleep 0.05; done
    held $h $ns || { echo "node$i: namespace holder failed" >&2; return 1; }
  fi
  # --config-file: else /etc/docker/daemon.json (data-root!) is read. NEVER use
  # --bridge=none in the host netns: dockerd then deletes the host's docker0.
  nsenter -t "$h" --net --uts --mount dockerd --config-file "$B/empty.json" \
    --data-root "$n/data" --exec-root "$n/exec" --pidfile "$n/dockerd.pid" \
    -H "unix://$n/docker.sock" --storage-driver overlay2 --cgroup-parent $P$i \
    ${SW_DOCKERD_OPTS:-} </dev/null >>"$n/dockerd.log" 2>&1 &
  echo $! >"$n/pid"
  for t in $(seq 150); do d $i version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "node$i: dockerd did not start, see $n/dockerd.log" >&2; return 1
}
crash() { local p; p=$(cat "$B/n$1/pid"); ours $p "$B/n$1/" && kill -KILL $p; } # dockerd dies, containers live
stop() { local p; p=$(cat "$B/n$1/pid"); ours $p "$B/n$1/" && kill -TERM $p &&
         while ours $p "$B/n$1/"; do sleep 0.1; done; }                          # graceful
cut()  { ip -n $HUB link set v$1 down; }   # network partition of node $1
heal() { ip -n $HUB link set v$1 up; }

up() {
  local N=${1:-3} M=${SW_MANAGERS:-1} i img
  mkdir -p "$B"; echo '{}' >"$B/empty.json"
  [ -d /run/netns ] || : >"$B/created-run-netns"
  ip netns add $HUB; ip -n $HUB link set lo up
  ip -n $HUB link add br0 type bridge; ip -n $HUB addr add $NET.254/24 dev br0
  ip -n $HUB link set br0 up
  for i in $(seq $N); do start $i; done
  d 1 swarm init --advertise-addr $NET.1 ${SW_INIT_OPTS:---dispatcher-heartbeat 1s} >/dev/null
  for i in $(seq 2 $N); do
    d $i swarm join --token "$(d 1 swarm join-token -q $([ $i -le $M ] && echo manager || echo worker))" \
      --advertise-addr $NET.$i $NET.1:2377 >/dev/null
  done
  for img in ${SW_IMAGES:-}; do
    docker save "$img" -o "$B/img.tar"; for i in $(seq $N); do d $i load -q -i "$B/img.tar"; done
  done; rm -f "$B/img.tar"
}

destroy() { # SIGKILL everything of node $1 (netns members + its container cgroups), then wipe
  local i=$1 p r c
  for r in $(seq 100); do
    p=$({ ip netns pids $P$i; find /sys/fs/cgroup/*/$P$i -name cgroup.procs -exec cat {} +; } 2>/dev/null || true)
    [ -z "$p" ] && break; kill -KILL $p 2>/dev/null || true; sleep 0.1
  done
  ip netns del $P$i 2>/dev/null || true
  for c in /sys/fs/cgroup/*/$P$i; do [ -d "$c" ] && { find "$c" -depth -type d -exec rmdir {} + || true; }; done
  rm -rf "$B/n$i"
}
down() {
  local n
  for n in "$B"/n*; do [ -d "$n" ] && destroy "${n##*/n}"; done
  ip netns del $HUB 2>/dev/null || true
  if [ -f "$B/created-run-netns" ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true; rmdir /run/netns; fi
  rm -rf "$B"
}
"$@"

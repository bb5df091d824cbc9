#!/bin/bash
# bench/mqtt_callgrind.sh NAME (docs/benchmarks.md §10): `berth server` (release) under callgrind, counters
# zeroed after start-up and a warm-up connection; loads: QoS 1 x 100 subscribers x 100 messages, QoS 0 x 1 x 5000.
# Writes mqtt-callgrind-NAME.out.1 in the current directory; read it with
#   callgrind_annotate --inclusive=yes mqtt-callgrind-NAME.out.1

set -e
T=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/release
W=$(mktemp -d)
name=$1
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
api=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
gw=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export BERTH_ADMIN_PASSWORD=bench-admin-password BERTH_LOG=warn
valgrind --tool=callgrind --callgrind-out-file=mqtt-callgrind-$name.out $T/berth server --data-dir $W/data \
  --api-listen 127.0.0.1:$api --gateway-listen 127.0.0.1:$gw --mqtt-listen 127.0.0.1:$port \
  --mqtt-max-connections-per-subject 1000 --mqtt-max-connections-per-address 1000 --mqtt-queue 100000 \
  --label berth.bench=mqtt-prof > $W/log 2>&1 &
vpid=$!
trap 'kill $vpid 2>/dev/null; rm -rf $W' EXIT
for i in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 1; done
tok=$(BERTH_SERVER=http://127.0.0.1:$api BERTH_DATA_DIR=$W/data $T/berth token issue --subject bench --audience mqtt --ttl 2h)
# warm-up connection round, then zero
$T/examples/mqtt_load --addr 127.0.0.1:$port --qos 1 --subs 2 --messages 50 --rate 0 --topic teams/default/bench --user bench --password "$tok" > /dev/null
callgrind_control -z $vpid > /dev/null
$T/examples/mqtt_load --addr 127.0.0.1:$port --qos 1 --subs 100 --messages 100 --rate 0 --topic teams/default/bench --user bench --password "$tok"
$T/examples/mqtt_load --addr 127.0.0.1:$port --qos 0 --subs 1 --messages 5000 --rate 0 --topic teams/default/bench --user bench --password "$tok"
callgrind_control -d $vpid > /dev/null
sleep 2
kill $vpid; wait $vpid || true
ls -la mqtt-callgrind-$name.out*

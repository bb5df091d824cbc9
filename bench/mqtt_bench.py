#!/usr/bin/env python3
"""MQTT: Berth's embedded broker vs Debian's mosquitto, in the same run (docs/benchmarks.md §10).

For each broker, the load client (crates/berth-mqtt/examples/mqtt_load.rs) runs one publisher
and 1 or 100 subscribers on one topic, at QoS 0 and QoS 1:
  - throughput: `--rate 0` (flood), deliveries per second (every subscriber counted);
  - latency: a paced run (`--rate`), p50 / p99 of publish -> deliver.
Each case is repeated (--reps) and reported as median (min-max); the ratio is Berth / mosquitto.

Berth runs as `berth server --mqtt-listen` (a Berth JWT with audience `mqtt` as the password;
topic teams/default/bench); mosquitto 2 with `listener PORT 127.0.0.1` and `allow_anonymous
true` (no auth: its cheapest setting). Both on loopback, one at a time.

    python3 bench/mqtt_bench.py --profile release      # binaries from target/release
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, secs=20):
    end = time.time() + secs
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def load(client, port, creds, qos, subs, messages, rate, topic):
    cmd = [client, "--addr", f"127.0.0.1:{port}", "--qos", str(qos), "--subs", str(subs),
           "--messages", str(messages), "--rate", str(rate), "--topic", topic]
    cmd += creds
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"mqtt_load failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def med(xs):
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="release")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=20000, help="per throughput run with 1 subscriber")
    args = ap.parse_args()
    tdir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    berth = os.path.join(tdir, args.profile, "berth")
    client = os.path.join(tdir, args.profile, "examples", "mqtt_load")
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    for p in (berth, client, mosq):
        if not os.path.exists(p):
            raise SystemExit(f"missing {p}")
    print("mosquitto:", subprocess.run([mosq, "-h"], capture_output=True, text=True).stdout.splitlines()[0])
    print("berth:", subprocess.run([berth, "--version"], capture_output=True, text=True).stdout.strip(),
          f"(profile {args.profile})")
    print("load average:", os.getloadavg())

    work = tempfile.mkdtemp(prefix="mqtt-bench-")
    procs = []
    try:
        # Berth
        bport, api, gw = free_port(), free_port(), free_port()
        env = dict(os.environ, BERTH_ADMIN_PASSWORD="bench-admin-password", BERTH_LOG="warn")
        data = os.path.join(work, "berth")
        blog = open(os.path.join(work, "berth.log"), "w")
        procs.append(subprocess.Popen(
            [berth, "server", "--data-dir", data, "--api-listen", f"127.0.0.1:{api}",
             "--gateway-listen", f"127.0.0.1:{gw}", "--mqtt-listen", f"127.0.0.1:{bport}",
             "--mqtt-max-connections-per-subject", "1000", "--mqtt-max-connections-per-address", "1000",
             "--mqtt-queue", "100000", "--label", "berth.bench=mqtt"],
            env=env, stdout=blog, stderr=blog))
        wait_port(bport)
        token = subprocess.run(
            [berth, "token", "issue", "--subject", "bench", "--audience", "mqtt", "--ttl", "2h"],
            env=dict(env, BERTH_SERVER=f"http://127.0.0.1:{api}", BERTH_DATA_DIR=data),
            capture_output=True, text=True, check=True).stdout.strip()
        # mosquitto
        mport = free_port()
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {mport} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"
                    "persistence false\nlog_dest none\n")
        procs.append(subprocess.Popen([mosq, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(mport)

        brokers = [
            ("berth", bport, ["--user", "bench", "--password", token]),
            ("mosquitto", mport, []),
        ]
        rows = []
        for qos in (0, 1):
            for subs in (1, 100):
                n_tp = args.messages if subs == 1 else max(args.messages // 50, 200)
                n_lat, rate = (2000, 1000) if subs == 1 else (300, 100)
                res = {}
                for rep in range(args.reps):
                    for name, port, creds in brokers:  # interleaved: load drift hits both
                        tp = load(client, port, creds, qos, subs, n_tp, 0, "teams/default/bench")
                        lat = load(client, port, creds, qos, subs, n_lat, rate, "teams/default/bench")
                        r = res.setdefault(name, {"tp": [], "p50": [], "p99": [], "lost": []})
                        r["tp"].append(tp["deliveries_per_sec"])
                        r["lost"].append(tp["expected"] - tp["delivered"] + lat["expected"] - lat["delivered"])
                        r["p50"].append(lat["p50_ms"])
                        r["p99"].append(lat["p99_ms"])
                        print(name, f"qos{qos} subs{subs} rep{rep}:", json.dumps(tp), json.dumps(lat), flush=True)
                b, m = res["berth"], res["mosquitto"]
                rows.append((qos, subs, n_tp, f"{n_lat}@{rate}/s", med(b["tp"]), med(m["tp"]),
                             statistics.median(b["tp"]) / statistics.median(m["tp"]),
                             med(b["p50"]), med(m["p50"]), med(b["p99"]), med(m["p99"]),
                             statistics.median(b["p99"]) / statistics.median(m["p99"]),
                             sum(b["lost"]), sum(m["lost"])))
        print()
        print("| QoS | subscribers | flood msgs | paced | Berth deliveries/s | mosquitto deliveries/s | ratio | Berth p50 ms | mosquitto p50 ms | Berth p99 ms | mosquitto p99 ms | p99 ratio | lost (B/m) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:.2f} | {r[7]} | {r[8]} | {r[9]} | {r[10]} | {r[11]:.2f} | {r[12]}/{r[13]} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

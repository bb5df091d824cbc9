#!/usr/bin/env python3
"""Benchmark 3: rolling update under load, Berth vs Swarm mode.

Both run 3 replicas of the same image with the same health definition (Berth: `x-berth.health`
HTTP /healthz every 1s; Swarm: healthcheck `["CMD", "/app", "probe"]` every 1s). A new version
is an environment change (`VERSION=vN`).

Berth:  `berth apply -f compose-vN.yaml --app X` with `update_config: {order: start-first,
        parallelism: 1}`; rollout time = from the start of `berth apply` until it returns
        (converged: every replica of the new revision ready and every old one removed).
        During the whole rollout, load runs through Berth's gateway: 4 threads (2 keep-alive,
        2 with a new connection per request), each a GET every ~5 ms; every non-200 answer or
        error is a failed request (goal: 0).
Swarm:  `docker service update --update-order start-first --env-add VERSION=vN
        --no-resolve-image <svc>` (everything else default: parallelism 1, delay 0, monitor 5s,
        synchronous); rollout time = until the command returns, and separately until the tasks
        converged (3 running tasks of the new spec, no old one running; polled every 50 ms).
        Load through the routing mesh for information, when the kernel has IPVS (else n/a).
"""

import argparse
import sys
import threading
import time

import common
from common import log, now

REPLICAS = 3
INTERVAL = "1s"
THREADS = 4


def service(b, version):
    return {"image": b.image, "expose": ["8080"], "labels": {"berth.test": b.id},
            "environment": {"VERSION": version},
            "deploy": {"replicas": REPLICAS}}


def berth_file(b, version, prefix):
    svc = service(b, version)
    svc["deploy"]["update_config"] = {"order": "start-first", "parallelism": 1}
    svc["x-berth"] = {"route": {"path_prefix": prefix},
                      "health": {"http": "/healthz", "port": 8080, "interval": INTERVAL, "timeout": "1s"}}
    return {"services": {"web": svc}}


def swarm_file(b, version, port, ingress):
    svc = service(b, version)
    del svc["expose"]
    if ingress:
        svc["ports"] = [f"{port}:8080"]
    svc["deploy"]["labels"] = {"berth.test": b.id}
    svc["healthcheck"] = {"test": ["CMD", "/app", "probe"], "interval": INTERVAL, "timeout": "1s", "retries": 3}
    return {"version": "3.8", "services": {"web": svc},
            "networks": {"default": {"labels": {"berth.test": b.id}}}}


def wait_steady(host, port, path, version, timeout=120):
    deadline = now() + timeout
    streak = 0
    while now() < deadline:
        try:
            status, body = common.http_get(host, port, path, timeout=1)
        except OSError:
            status, body = 0, ""
        streak = streak + 1 if status == 200 and body.startswith(version + " ") else 0
        if streak >= 20:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{host}:{port}{path} not steadily serving {version}")


def run_berth(b, reps):
    app = f"u{b.short[-4:]}"
    prefix = "/u"
    host, port = b.gateway
    files = {}
    for v in range(1, reps + 2):
        files[v] = b.write(f"rollout-berth-v{v}.yaml", common.to_yaml(berth_file(b, f"v{v}", prefix)) + "\n")
    log(f"Berth file ({files[1]}; later versions differ only in VERSION):\n" + open(files[1]).read())
    b.berth_apps.add(app)
    b.berth("apply", "-f", files[1], "--app", app)
    times, failed, details = [], [], []
    for rep in range(1, reps + 1):
        v = rep + 1
        wait_steady(host, port, prefix + "/", f"v{v - 1}")
        time.sleep(1.0)
        load = common.Load(host, port, prefix + "/", threads=THREADS).start()
        time.sleep(1.0)
        log(f"  $ berth apply -f {files[v]} --app {app}   (under load)")
        t0 = now()
        p = b.berth("apply", "-f", files[v], "--app", app, check=False, quiet=True)
        dt = now() - t0
        time.sleep(1.0)
        res = load.finish()
        if p.returncode != 0:
            raise RuntimeError(f"berth apply v{v} failed: {p.stdout}{p.stderr}")
        times.append(dt)
        failed.append(res["failed"])
        details.append(res)
        log(f"    berth rep {rep} (v{v - 1} -> v{v}): apply returned converged after {dt:.2f} s;"
            f" requests ok {res['ok']}, failed {res['failed']}, versions seen {res['versions']}")
        for t, f in res["failures"][:5]:
            log(f"      failure at {time.strftime('%H:%M:%S', time.localtime(t))}.{int(t % 1 * 1000):03d}: {f}")
    b.berth_rm(app)
    return times, failed, details


def swarm_converged(b, svc, version):
    tasks = b.docker.tasks(svc)
    running = [t for t in tasks if t["Status"]["State"] == "running"]
    new = [t for t in running if t["DesiredState"] == "running"
           and f"VERSION={version}" in (t["Spec"]["ContainerSpec"].get("Env") or [])]
    return len(new) == REPLICAS and len(running) == REPLICAS


def run_swarm(b, reps):
    stack = f"u{b.short[-4:]}"
    svc = f"{stack}_web"
    ingress = b.docker.ipvs_available()
    port = common.free_port()
    f = b.write("rollout-swarm.yaml", common.to_yaml(swarm_file(b, "v1", port, ingress)) + "\n")
    log(f"Swarm stack file ({f}):\n" + open(f).read())
    log(f"Swarm command: docker stack deploy --resolve-image never -c {f} {stack}")
    if not ingress:
        log("NOTE: this kernel has no IPVS (/proc/net/ip_vs): Swarm's routing mesh cannot publish ports here,"
            " so no load runs through Swarm (failed requests: n/a); rollout time is still measured.")
    b.stack_deploy(stack, f)
    times, conv_times, failed = [], [], []
    try:
        for rep in range(1, reps + 1):
            v = rep + 1
            deadline = now() + 120
            while not swarm_converged(b, svc, f"v{v - 1}"):
                if now() > deadline:
                    raise RuntimeError("swarm service did not converge before the update")
                time.sleep(0.2)
            load = None
            if ingress:
                wait_steady("127.0.0.1", port, "/", f"v{v - 1}")
            time.sleep(1.0)
            if ingress:
                load = common.Load("127.0.0.1", port, "/", threads=THREADS).start()
                time.sleep(1.0)
            cmd = ["docker", "service", "update", "--update-order", "start-first", "--env-add", f"VERSION=v{v}",
                   "--no-resolve-image", svc]
            log("  $ " + " ".join(cmd))
            conv = {}
            stop = threading.Event()

            def watch(t0, version):
                while not stop.is_set():
                    try:
                        if swarm_converged(b, svc, version):
                            conv["t"] = now() - t0
                            return
                    except Exception:  # noqa: BLE001
                        pass
                    time.sleep(0.05)

            t0 = now()
            w = threading.Thread(target=watch, args=(t0, f"v{v}"), daemon=True)
            w.start()
            common.run(cmd, quiet=True, timeout=600)
            dt = now() - t0
            w.join(timeout=60)
            stop.set()
            res = None
            if load:
                time.sleep(1.0)
                res = load.finish()
            times.append(dt)
            conv_times.append(conv.get("t"))
            failed.append(res["failed"] if res else None)
            log(f"    swarm rep {rep} (v{v - 1} -> v{v}): `docker service update` returned after {dt:.2f} s;"
                f" tasks converged at {conv.get('t', float('nan')):.2f} s;"
                + (f" requests ok {res['ok']}, failed {res['failed']}" if res else " no load (no routing mesh)"))
    finally:
        b.stack_rm(stack)
    return times, conv_times, failed


def bench(b, reps=3):
    log("\n=== Benchmark 3: rolling update under load (Berth vs Swarm mode) ===")
    b.ensure_swarm()
    bt, bf, _ = run_berth(b, reps)
    st, sc, sf = run_swarm(b, reps)
    r_cmd = common.ratio(bt, st)
    r_conv = common.ratio(bt, sc)
    log(f"berth: rollout {common.fmt_stats(bt)}; failed requests per rollout {bf}")
    log(f"swarm: `service update` returned {common.fmt_stats(st)}; tasks converged {common.fmt_stats(sc)};"
        f" failed requests {sf}")
    log(f"ratio Berth/Swarm (medians): vs command return {r_cmd:.2f}, vs task convergence {r_conv:.2f}"
        f"  (goal <= 1.0 and 0 failed: {'met' if r_cmd <= 1.0 and sum(bf) == 0 else 'NOT met'})")
    return {"berth": bt, "berth_failed": bf, "swarm": st, "swarm_converged": sc, "swarm_failed": sf,
            "ratio": r_cmd, "ratio_converged": r_conv}


def summary_rows(res):
    met_t = res["ratio"] <= 1.0
    met_f = sum(res["berth_failed"]) == 0
    return [
        ["3. rollout time (3 replicas)", "Swarm (service update returns)", common.fmt_stats(res["berth"]),
         common.fmt_stats(res["swarm"]), f"{res['ratio']:.2f}", "<= 1.0", "yes" if met_t else "NO"],
        ["3. rollout time (3 replicas)", "Swarm (tasks converged)", common.fmt_stats(res["berth"]),
         common.fmt_stats(res["swarm_converged"]), f"{res['ratio_converged']:.2f}", "(info)", ""],
        ["3. failed requests in rollouts", "Swarm", str(res["berth_failed"]),
         str(res["swarm_failed"]) if any(x is not None for x in res["swarm_failed"]) else "n/a (no IPVS)",
         "", "0", "yes" if met_f else "NO"],
    ]


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    b = common.Bench(build=not args.no_build, berth_log=args.berth_log)
    try:
        b.print_versions()
        b.prepare()
        b.start_berth()
        res = bench(b, args.reps)
        print()
        print(common.table(summary_rows(res), ["benchmark", "peer", "Berth", "peer", "ratio", "goal", "met"]))
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())

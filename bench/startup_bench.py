#!/usr/bin/env python3
"""Benchmark 7: a health-gated Compose file up and healthy, Berth vs docker-compose (v1).

The file is bench/startup-11.yaml: 11 services in three tiers (3, 4, 4), each tier
`depends_on: condition: service_healthy` on every service of the tier before it (two gated
levels), every service with a Compose healthcheck `["CMD", "/app", "probe"]`, `interval: 5s`.
Both tools read the same file unchanged (image and label come from the environment).

Berth:   `berth apply -f bench/startup-11.yaml --app <fresh app>` on a running server; the timer
         stops when the command returns (it waits until the revision converged: every replica
         ready, which for these services is Docker's health status, or Berth's start probe — the
         healthcheck's own test exec'd every 250 ms while Docker still says `starting`). Also
         recorded, for reference: when Docker itself reports all 11 healthy (its own first check
         runs 5 s after each start).
Compose: `docker-compose -p <fresh project> -f bench/startup-11.yaml up -d` (1.29 waits for each
         tier's health before starting the next); the timer runs from the start of `up -d`
         until every container of the project reports `healthy` (polled every 50 ms through the
         Engine API).
Swarm mode (`--swarm`): `docker stack deploy` of the same file with `version: "3.8"` added and
         the `depends_on` blocks dropped (the stack file format has no `condition:`, and Swarm
         never orders start-up: every service starts at once, so Swarm does less than the
         other two); the timer runs until every task's container reports `healthy`. Swarm mode
         is enabled for the run only if it was inactive, and left again at the end.
Between repetitions: `berth rm --app X` / `docker-compose down -v` / `docker stack rm`; the
tools take turns going first. Everything carries `berth.test=<run id>` and is removed at the end, even on failure.
"""

import argparse
import os
import sys
import threading
import time

import common
from common import log, now

FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startup-11.yaml")
SERVICES = 11


def all_healthy(b, labels, exclude_compose=False):
    cs = b.docker.containers(labels)
    if exclude_compose:
        cs = [c for c in cs if "com.docker.compose.project" not in c.get("Labels", {})]
    return len(cs) == SERVICES and all("(healthy)" in c.get("Status", "") for c in cs)


def run_berth(b, rep):
    app = f"up{rep}{b.short[-4:]}"
    b.berth_apps.add(app)
    docker_healthy = {}
    stop = threading.Event()

    def watch():
        # Docker's own view of the same containers, for reference.
        while not stop.is_set():
            try:
                if all_healthy(b, [b.label], exclude_compose=True):
                    docker_healthy["t"] = now()
                    return
            except OSError:
                pass
            time.sleep(0.05)

    t0 = now()
    w = threading.Thread(target=watch, daemon=True)
    w.start()
    p = b.berth("apply", "-f", FILE, "--app", app, "--timeout", "120", check=False, quiet=True)
    t1 = now()
    if p.returncode != 0:
        stop.set()
        raise RuntimeError(f"berth apply failed: {p.stdout}{p.stderr}")
    w.join(timeout=60)
    stop.set()
    elapsed = t1 - t0
    dh = docker_healthy["t"] - t0 if "t" in docker_healthy else None
    ps = b.berth_ps(app)
    healthy = sum(1 for i in ps if i.get("health") == "healthy")
    log(f"    berth   rep {rep}: apply returned after {elapsed:.2f} s ({healthy}/{len(ps)} healthy per"
        f" berth ps); Docker reported all healthy at {dh:.2f} s" if dh is not None else
        f"    berth   rep {rep}: apply returned after {elapsed:.2f} s ({healthy}/{len(ps)} healthy)")
    if healthy != SERVICES:
        log(f"    WARNING: berth ps shows {healthy} healthy of {len(ps)}, expected {SERVICES}")
    b.berth_rm(app)
    return elapsed, dh


def run_compose(b, rep):
    project = f"up{rep}{b.short[-4:]}c"
    t0 = now()
    b.compose(project, FILE, "up", "-d", quiet=True)
    t_up = now() - t0
    deadline = now() + 300
    while not all_healthy(b, [f"com.docker.compose.project={project}"]):
        if now() > deadline:
            raise RuntimeError("compose: not all healthy after 300 s")
        time.sleep(0.05)
    elapsed = now() - t0
    log(f"    compose rep {rep}: all healthy after {elapsed:.2f} s (`up -d` returned at {t_up:.2f} s)")
    b.compose(project, FILE, "down", "-v", quiet=True)
    del b.compose_projects[project]
    return elapsed, t_up


def swarm_file(b):
    """The file as a stack file: a version line, no depends_on blocks."""
    out, skipping = ['version: "3.8"'], False
    for line in open(FILE):
        line = line.rstrip("\n")
        if line.startswith("    depends_on:"):
            skipping = True
            continue
        if skipping and (line.startswith("     ") or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return b.write("startup-11-swarm.yaml", "\n".join(out) + "\n")


def run_swarm(b, rep):
    stack = f"up{rep}{b.short[-4:]}s"
    f = swarm_file(b)
    t0 = now()
    b.stack_deploy(stack, f)
    deadline = now() + 300
    while not all_healthy(b, [f"com.docker.stack.namespace={stack}"]):
        if now() > deadline:
            raise RuntimeError("swarm: not all healthy after 300 s")
        time.sleep(0.05)
    elapsed = now() - t0
    log(f"    swarm   rep {rep}: all 11 tasks healthy after {elapsed:.2f} s")
    b.stack_rm(stack)
    return elapsed, None


def bench(b, reps, swarm=False):
    log("\n=== Benchmark 7: 11 services, two health-gated levels, interval 5s (Berth vs docker-compose) ===")
    log(f"Berth command:   BENCH_IMAGE={b.image} BENCH_LABEL={b.id} berth apply -f {FILE} --app <fresh app>")
    log(f"Compose command: BENCH_IMAGE={b.image} BENCH_LABEL={b.id} docker-compose -p <fresh project> -f {FILE}"
        " up -d  + poll until all 11 are healthy")
    if swarm:
        log(f"Swarm command:   docker stack deploy --resolve-image never -c <the file as a stack file> <fresh stack>"
            " + poll until all 11 are healthy")
        b.ensure_swarm()
    berth_t, berth_docker, comp_t, comp_up, swarm_t = [], [], [], [], []
    for rep in range(1, reps + 1):
        order = [("berth", run_berth), ("compose", run_compose)] + ([("swarm", run_swarm)] if swarm else [])
        k = (rep - 1) % len(order)
        order = order[k:] + order[:k]
        for name, fn in order:
            x, y = fn(b, rep)
            if name == "berth":
                berth_t.append(x)
                berth_docker.append(y)
            elif name == "compose":
                comp_t.append(x)
                comp_up.append(y)
            else:
                swarm_t.append(x)
    r = common.ratio(berth_t, comp_t)
    log(f"berth apply (all ready)        {common.fmt_stats(berth_t)}")
    log(f"  Docker's own 'all healthy'   {common.fmt_stats(berth_docker)}  (reference)")
    log(f"compose all healthy            {common.fmt_stats(comp_t)}; `up -d` alone {common.fmt_stats(comp_up)}")
    log(f"ratio Berth/Compose (medians) = {r:.2f}  (goal <= 0.5: {'met' if r <= 0.5 else 'NOT met'})")
    out = {"berth": berth_t, "berth_docker": berth_docker, "compose": comp_t, "ratio": r}
    if swarm:
        out["swarm"] = swarm_t
        out["swarm_ratio"] = common.ratio(berth_t, swarm_t)
        log(f"swarm all healthy (no ordering) {common.fmt_stats(swarm_t)}; ratio Berth/Swarm = {out['swarm_ratio']:.2f}")
    return out


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--swarm", action="store_true", help="also Swarm mode (docker stack deploy) in the same run")
    args = ap.parse_args()
    b = common.Bench(build=not args.no_build, berth_log=args.berth_log)
    # The file takes its image and label from the environment (both tools interpolate it).
    os.environ["BENCH_IMAGE"] = b.image
    os.environ["BENCH_LABEL"] = b.id
    try:
        b.print_versions()
        b.prepare()
        b.start_berth()
        r = bench(b, args.reps, args.swarm)
        print()
        rows = [["7. 11 services, 2 gated levels", "docker-compose", common.fmt_stats(r["berth"]),
                 common.fmt_stats(r["compose"]), f"{r['ratio']:.2f}", "<= 0.5",
                 "yes" if r["ratio"] <= 0.5 else "NO"]]
        if args.swarm:
            rows.append(["7. same file, no ordering", "Swarm mode (stack)", common.fmt_stats(r["berth"]),
                         common.fmt_stats(r["swarm"]), f"{r['swarm_ratio']:.2f}", "", ""])
        print(common.table(rows, ["benchmark", "peer", "Berth", "peer", "ratio", "goal", "met"]))
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())

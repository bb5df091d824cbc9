#!/usr/bin/env python3
"""Benchmark 13: Berth on a Swarm (issue 18, docs/swarm.md "Figures to measure").

The program brings up its own lab Swarm (`scripts/swarm-lab.sh`: `--nodes` (3) node dockerds in
network namespaces of their own, node 1 the manager, a namespace prefix, base directory and
network of this run) and ALWAYS tears it down. The static test app's image is loaded into every
node. `berth server --runtime swarm` runs in the lab's hub namespace, its API on the hub's bridge
address (where the nodes' gateways reach it), `DOCKER_HOST` the manager's socket, the workers'
engines given with `--node-engine`; Berth's gateway runs on the manager (the default
`--gateway-nodes node.role=manager`) at node1:7480. Load clients run in the hub namespace too:
closed loops of idempotent GETs through that gateway (`--clients` threads, half keep-alive, half a
new connection per request, 5 ms apart each), every request's start, end and answer recorded.
The host's Docker engine and its Swarm state are never touched (the image is built there and
removed at the end).

1. **Node cut under load** (`swarm-lab.sh cut I`, a worker running a task): a service of
   `--replicas` (3) tasks routed by Berth. Measured from the cut: the requests that failed, the
   requests slowed by the lost task (over 1 s: sent to it, then retried elsewhere by the
   gateway) and when the last of them started; when Berth took the lost tasks out of rotation
   (`berth ps`: `in_rotation`); when Swarm runs the replicas again on the survivors (the
   manager's task list) and when Berth says so (`berth ps`: running, in rotation, not on the
   cut node); the first answer from a replacement through the gateway. Next to **Swarm alone**:
   the same image as a plain `docker service create` (dnsrr, 3 replicas) on the same lab, the
   time from the cut until its replicas run again on the survivors. Each repetition deploys a
   fresh application / service, cuts a worker (alternately node 2 and 3), heals it, removes it.
2. **Rolling update under load**: 3 replicas, `update_config: {order: start-first, parallelism:
   1}`, a new `VERSION` per repetition with `berth apply` (timed until it returns: Berth waits for
   Swarm's `UpdateStatus` `completed`, which Swarm sets after its `monitor` period, 5 s by
   default, following the last task); through the gateway, when the last answer from an old
   version came; requests answered and failed. Next to Swarm alone: `docker service update
   --env-add VERSION=...` of a plain service made with `--update-order start-first
   --update-parallelism 1`, time until only new tasks run and until its `UpdateStatus` is
   `completed` (no load: no front door without IPVS).
3. **Deploy one Compose file**: `berth apply -f FILE` vs `docker stack deploy -c FILE` of the
   same file (2 services, 3 + 2 replicas, `endpoint_mode: dnsrr`, a route for Berth that the
   stack ignores), alternating who goes first. Time until every task runs and answers: the
   manager's task list shows every desired task running, and a `GET /` to each task's overlay
   address answers 200 — sent from inside one of the application's own tasks' network namespace
   (the same check for both tools), looked at from the command's start (`berth apply` runs in a
   thread meanwhile, as `stack deploy` returns at once). For Berth also when `apply` returned (it
   waits until the gateways have probed every task) and when the route first answered through
   the gateway. Both are warmed up once first (the gateway image loaded,
   the first overlay network made).

    python3 bench/swarm_bench.py [--no-build] [--reps 3] [--only 1,2,3] [--nodes 3]
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse

import common
from common import log, now

POLL = 0.05
GW_PORT = 7480


# --------------------------------------------------------------------------------------------
# helpers over the manager's Engine API


def tasks_of(lab, service):
    f = urllib.parse.quote(json.dumps({"service": [service]}))
    return lab.docker(1).get(f"/tasks?filters={f}")


def pick_victim(lab, names, tasks, k):
    """The running tasks by node name, and the worker to cut (alternating between node2 and
    node3 with the repetition; one that runs a task)."""
    on = {}
    for t in tasks:
        on.setdefault(names[t["NodeID"]], []).append(t)
    victim = 2 + (k % 2) if lab.nodes >= 3 else 2
    if f"node{victim}" not in on:
        victim = next(int(n[4:]) for n in sorted(on) if n != "node1")
    return on, victim, f"node{victim}"


def services_named(lab, part):
    """Services on the manager whose name contains `part`."""
    return [s["Spec"]["Name"] for s in lab.docker(1).get("/services") if part in s["Spec"]["Name"]]


def running(task):
    return task.get("DesiredState") == "running" and task.get("Status", {}).get("State") == "running"


def task_ip(task):
    for att in task.get("NetworksAttachments") or []:
        if att.get("Network", {}).get("Spec", {}).get("Name") == "ingress":
            continue
        for a in att.get("Addresses") or []:
            return a.split("/")[0]
    return None


def task_container(task):
    return (task.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID") or ""


def wait_until(what, fn, timeout=120, poll=0.2):
    deadline = now() + timeout
    while now() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(poll)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def answers_from(pid, ips, timeout=0.5):
    """The addresses of `ips` whose port 8080 answers `GET /` with 200, asked from inside the
    network namespace of process `pid` (a task's container: attached to the overlay)."""
    out = set()

    def probe():
        common.setns_net(f"/proc/{pid}/ns/net")
        for ip in ips:
            try:
                if common.http_get(ip, 8080, "/", timeout=timeout)[0] == 200:
                    out.add(ip)
            except OSError:
                pass

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return out


def container_pid(lab, names, task):
    node = names.get(task.get("NodeID"), "")
    if not node.startswith("node"):
        return None
    info = lab.docker(int(node[4:])).inspect(task_container(task))
    return info["State"]["Pid"] if info and info["State"].get("Pid") else None


def all_tasks_answer(lab, services, expected, names):
    """True when `expected` tasks of `services` run (desired and actual) and each answers."""
    tasks = [t for s in services for t in tasks_of(lab, s) if running(t)]
    if len(tasks) < expected:
        return False
    ips = [task_ip(t) for t in tasks]
    if None in ips:
        return False
    pid = container_pid(lab, names, tasks[0])
    if not pid:
        return False
    return len(answers_from(pid, ips)) == len(ips)


def wait_node_ready(lab, i, timeout=60):
    wait_until(f"node{i} ready", lambda: lab.node_state(f"node{i}") == "ready", timeout=timeout)


def gw_get(lab, path, timeout=1.0):
    try:
        return common.http_get(lab.addr(1), GW_PORT, path, timeout=timeout)
    except OSError:
        return 0, ""


def wait_route(lab, path, hostnames=1, version=None, timeout=120):
    """Until the route answers through node1's gateway, `hostnames` distinct replicas seen."""
    seen = set()
    deadline = now() + timeout
    while now() < deadline:
        status, body = gw_get(lab, path)
        if status == 200 and (version is None or body.startswith(version + " ")):
            seen.add(body.split()[1] if len(body.split()) > 1 else "")
            if len(seen) >= hostnames:
                return seen
        time.sleep(0.05)
    raise RuntimeError(f"route {path} did not answer from {hostnames} replicas within {timeout} s (saw {seen})")


def berth_service_gone(lab, app):
    return not services_named(lab, f"_{app}_")


def berth_rm(b, lab, app):
    b.berth("rm", "--app", app, check=False, timeout=180, quiet=True)
    wait_until(f"{app} removed", lambda: berth_service_gone(lab, app), timeout=120)


def app_yaml(b, services, version="v1", update=False):
    """The services of a Compose file: `services` = {name: replicas}, each the test app with
    `endpoint_mode: dnsrr` (no IPVS here; Berth's default, written so the stack has it too)."""
    out = {}
    for name, replicas in services.items():
        svc = {"image": b.image, "environment": {"VERSION": version}, "expose": ["8080"],
               "labels": {"berth.test": b.id},
               "deploy": {"replicas": replicas, "endpoint_mode": "dnsrr"}}
        if update:
            svc["deploy"]["update_config"] = {"order": "start-first", "parallelism": 1}
        out[name] = svc
    return out


def write_file(b, name, services, prefix=None):
    """Write a Compose file (version 3.8, which `docker stack deploy` wants); with `prefix`, its
    first service routed by Berth there (`x-berth`, which the stack ignores)."""
    doc = {"version": "3.8", "services": services}
    if prefix:
        first = next(iter(services.values()))
        first["x-berth"] = {"route": {"path_prefix": prefix}}
    return b.write(name, common.to_yaml(doc) + "\n")


# --------------------------------------------------------------------------------------------
# 1. a node cut under load


def analyse_load(records, t0):
    """From requests recorded by common.Load: (answered, failed, slow (> 1 s), last slow start
    after t0, max latency) of those that ended after t0."""
    after = [r for r in records if r[1] >= t0]
    ok = sum(1 for r in after if r[2] == 200)
    failed = [r for r in after if r[2] != 200]
    slow = [r for r in after if r[1] - r[0] > 1.0]
    last_slow = max((r[0] - t0 for r in slow), default=None)
    worst = max((r[1] - r[0] for r in after), default=0.0)
    return ok, failed, slow, last_slow, worst


def cut_berth(b, lab, k, replicas, clients):
    app = f"cut{k}"
    prefix = f"/{app}"
    f = write_file(b, f"cut{k}.yaml", app_yaml(b, {"web": replicas}, version=f"c{k}"), prefix=prefix)
    b.berth("apply", "-f", f, "--app", app)
    wait_route(lab, prefix + "/", hostnames=replicas)
    names = lab.node_names()
    svc = services_named(lab, f"_{app}_")[0]
    tasks = [t for t in tasks_of(lab, svc) if running(t)]
    on, victim, vname = pick_victim(lab, names, tasks, k)
    old_hosts = {task_container(t)[:12] for t in tasks}
    lost_hosts = {task_container(t)[:12] for t in on[vname]}
    load = common.Load(lab.addr(1), GW_PORT, prefix + "/", threads=clients, pause=0.005, timeout=10.0,
                       record=True).start()
    time.sleep(2.0)
    t0 = time.time()
    lab.cut(victim)
    out_rot = berth_running = swarm_running = new_answer = None
    deadline = t0 + 120
    while time.time() < deadline and None in (out_rot, berth_running, swarm_running, new_answer):
        t = time.time()
        ps = b.berth_ps(app)
        if out_rot is None and not any(i.get("node") == vname and i.get("in_rotation") for i in ps):
            out_rot = t - t0
        if berth_running is None:
            good = [i for i in ps if i.get("state") == "running" and i.get("in_rotation") and i.get("node") != vname]
            if len(good) >= replicas:
                berth_running = t - t0
        if swarm_running is None:
            good = [x for x in tasks_of(lab, svc) if running(x) and names.get(x["NodeID"]) != vname]
            if len(good) >= replicas:
                swarm_running = t - t0
        if new_answer is None:
            with load.lock:
                hits = [r for r in load.records if r[2] == 200 and r[3].split()[-1] not in old_hosts]
            if hits:
                new_answer = min(r[1] for r in hits) - t0
        time.sleep(max(0.0, POLL - (time.time() - t)))
    time.sleep(2.0)
    res = load.finish()
    ok, failed, slow, last_slow, worst = analyse_load(load.records, t0)
    lost_answers = sum(1 for r in load.records if r[0] >= t0 and r[2] == 200 and r[3].split()[-1] in lost_hosts)
    row = {"node": vname, "out_of_rotation": out_rot, "swarm_running": swarm_running,
           "berth_running": berth_running, "new_answer": new_answer, "answered": ok, "failed": len(failed),
           "slow": len(slow), "last_slow": last_slow, "worst": worst, "lost_answers": lost_answers,
           "failures": [(round(t - t0, 2), e) for t, e in res["failures"][:5]]}
    fmt = lambda v: "n/a" if v is None else f"{v:.2f} s"  # noqa: E731
    log(f"  berth, cut {k + 1} ({vname}, {len(lost_hosts)} of {replicas} tasks there): out of rotation "
        f"{fmt(out_rot)}, Swarm runs {replicas} on the survivors {fmt(swarm_running)}, Berth says so "
        f"{fmt(berth_running)}, first answer from a replacement {fmt(new_answer)}; {ok} answered, "
        f"{len(failed)} failed, {len(slow)} slowed > 1 s (last started {fmt(last_slow)} after the cut, "
        f"slowest {worst:.2f} s); {lost_answers} answered by the lost task after the cut")
    for fl in row["failures"]:
        log(f"    failed (started {fl[0]} s after the cut): {fl[1]}")
    lab.heal(victim)
    wait_node_ready(lab, victim)
    berth_rm(b, lab, app)
    return row


def cut_swarm(b, lab, k, replicas):
    name = f"swcut{k}"
    lab.d(1, "service", "create", "--detach", "--no-resolve-image", "--name", name, "--replicas", str(replicas),
          "--endpoint-mode", "dnsrr", "--label", b.label, "--env", f"VERSION=s{k}", b.image)
    names = lab.node_names()
    tasks = wait_until(f"{name}: {replicas} running",
                       lambda: (lambda ts: ts if len(ts) >= replicas else None)(
                           [t for t in tasks_of(lab, name) if running(t)]), timeout=120)
    on, victim, vname = pick_victim(lab, names, tasks, k)
    time.sleep(2.0)
    t0 = time.time()
    lab.cut(victim)
    swarm_running = None
    while time.time() < t0 + 120 and swarm_running is None:
        t = time.time()
        good = [x for x in tasks_of(lab, name) if running(x) and names.get(x["NodeID"]) != vname]
        if len(good) >= replicas:
            swarm_running = t - t0
        time.sleep(max(0.0, POLL - (time.time() - t)))
    log(f"  swarm alone, cut {k + 1} ({vname}, {len(on[vname])} of {replicas} tasks there): {replicas} running on"
        f" the survivors after {'n/a' if swarm_running is None else f'{swarm_running:.2f} s'}")
    lab.heal(victim)
    wait_node_ready(lab, victim)
    lab.d(1, "service", "rm", name, check=False)
    wait_until(f"{name} removed", lambda: not services_named(lab, name), timeout=60)
    return swarm_running


def bench_cut(b, lab, reps, replicas, clients):
    log(f"\n=== 1. a node cut under {clients} clients: {replicas} replicas on {lab.nodes} nodes ===")
    berth_rows, swarm_times = [], []
    for k in range(reps):
        order = ["berth", "swarm"] if k % 2 == 0 else ["swarm", "berth"]
        for who in order:
            if who == "berth":
                berth_rows.append(cut_berth(b, lab, k, replicas, clients))
            else:
                swarm_times.append(cut_swarm(b, lab, k, replicas))
    return berth_rows, swarm_times


# --------------------------------------------------------------------------------------------
# 2. a rolling update under load


def bench_rollout(b, lab, reps, replicas, clients):
    log(f"\n=== 2. a rolling update of {replicas} replicas under {clients} clients ===")
    app = "roll"
    prefix = f"/{app}"

    def apply(v):
        f = write_file(b, f"roll-{v}.yaml", app_yaml(b, {"web": replicas}, version=v, update=True), prefix=prefix)
        t = now()
        b.berth("apply", "-f", f, "--app", app)
        return now() - t

    apply("r0")
    wait_route(lab, prefix + "/", hostnames=replicas, version="r0")
    rows = []
    for k in range(1, reps + 1):
        v = f"r{k}"
        load = common.Load(lab.addr(1), GW_PORT, prefix + "/", threads=clients, pause=0.005, timeout=10.0,
                           record=True).start()
        time.sleep(1.0)
        t0 = time.time()
        took = apply(v)
        time.sleep(1.0)
        res = load.finish()
        # when the traffic moved: the first answer from the new version, the last from an old one
        new = [r[1] - t0 for r in load.records if r[2] == 200 and r[3].startswith(v + " ")]
        old = [r[1] - t0 for r in load.records if r[2] == 200 and not r[3].startswith(v + " ")]
        first_new = min(new) if new else None
        last_old = max(old) if old else None
        rows.append({"apply": took, "first_new": first_new, "last_old": last_old, "answered": res["ok"],
                     "failed": res["failed"], "versions": res["versions"], "failures": res["failures"][:5]})
        log(f"  berth, update {k}: apply returned after {took:.2f} s; through the gateway the first {v} answer"
            f" came {first_new if first_new is None else f'{first_new:.2f} s'}, the last old one"
            f" {last_old if last_old is None else f'{last_old:.2f} s'} after the apply started;"
            f" {res['ok']} answered, {res['failed']} failed {res['versions']}")
        for fl in res["failures"][:5]:
            log(f"    failed: {fl}")
    berth_rm(b, lab, app)

    # Swarm alone: the same update of a plain service, time until only new tasks run
    name = "swroll"
    lab.d(1, "service", "create", "--detach", "--no-resolve-image", "--name", name, "--replicas", str(replicas),
          "--endpoint-mode", "dnsrr", "--label", b.label, "--env", "VERSION=r0", "--update-order", "start-first",
          "--update-parallelism", "1", b.image)
    wait_until(f"{name} running", lambda: len([t for t in tasks_of(lab, name) if running(t)]) >= replicas)
    swarm = []
    for k in range(1, reps + 1):
        v = f"VERSION=r{k}"
        t = now()
        lab.d(1, "service", "update", "--detach", "--env-add", v, name)

        def converged():
            ts = tasks_of(lab, name)
            new = [x for x in ts if running(x) and v in (x["Spec"]["ContainerSpec"].get("Env") or [])]
            old = [x for x in ts if x.get("Status", {}).get("State") == "running"
                   and v not in (x["Spec"]["ContainerSpec"].get("Env") or [])]
            return len(new) >= replicas and not old

        while not converged() and now() - t < 120:
            time.sleep(POLL)
        only_new = now() - t

        def completed():
            st = lab.docker(1).get(f"/services/{name}").get("UpdateStatus") or {}
            return st.get("State") == "completed"

        while not completed() and now() - t < 120:
            time.sleep(POLL)
        swarm.append((only_new, now() - t))
        log(f"  swarm alone, update {k}: only new tasks run after {only_new:.2f} s, the update completed"
            f" (UpdateStatus, after Swarm's monitor period) after {swarm[-1][1]:.2f} s")
    lab.d(1, "service", "rm", name, check=False)
    wait_until(f"{name} removed", lambda: not services_named(lab, name), timeout=60)
    return rows, swarm


# --------------------------------------------------------------------------------------------
# 3. one Compose file: berth apply vs docker stack deploy


DEPLOY = {"web": 3, "api": 2}


def deploy_berth(b, lab, f, app, names):
    """`berth apply` in a thread, the tasks looked at from the start meanwhile (as for the
    stack, whose command returns at once): when every task runs and answers, when `apply`
    returned (it waits for the gateways to have probed every task) and when the route answered."""
    expected = sum(DEPLOY.values())
    done = {}
    t0 = now()

    def apply():
        b.berth("apply", "-f", f, "--app", app, quiet=True)
        done["returned"] = now() - t0

    th = threading.Thread(target=apply)
    th.start()
    answered = route = None
    while now() - t0 < 120 and (answered is None or route is None):
        t = now()
        if route is None:
            status, _ = gw_get(lab, f"/{app}/", timeout=0.5)
            if status == 200:
                route = now() - t0
        if answered is None:
            svcs = services_named(lab, f"_{app}_")
            if len(svcs) == len(DEPLOY) and all_tasks_answer(lab, svcs, expected, names):
                answered = now() - t0
        time.sleep(max(0.0, POLL - (now() - t)))
    th.join()
    return done.get("returned"), answered, route


def deploy_stack(b, lab, f, stack, names):
    expected = sum(DEPLOY.values())
    svcs = [f"{stack}_{s}" for s in DEPLOY]
    t0 = now()
    lab.d(1, "stack", "deploy", "--resolve-image", "never", "-c", f, stack)
    returned = now() - t0
    answered = None
    while now() - t0 < 120 and answered is None:
        t = now()
        if all_tasks_answer(lab, svcs, expected, names):
            answered = now() - t0
        time.sleep(max(0.0, POLL - (now() - t)))
    return returned, answered


def keep_specs(b, lab, names, who, services):
    """The services' specs, their tasks, and each task's container (when made, when started) in
    the work directory as `deploy-WHO.json`: what to compare when one tool's tasks start later."""
    out = {"services": [], "tasks": [], "containers": {}}
    for name in services:
        out["services"] += [s for s in lab.docker(1).get("/services") if s["Spec"]["Name"] == name]
        for t in tasks_of(lab, name):
            out["tasks"].append(t)
            node = names.get(t.get("NodeID"), "")
            cid = task_container(t)
            if node.startswith("node") and cid:
                info = lab.docker(int(node[4:])).inspect(cid) or {}
                out["containers"][cid] = {"node": node, "created": info.get("Created"),
                                          "started": info.get("State", {}).get("StartedAt")}
    with open(os.path.join(b.dir, f"deploy-{who}.json"), "w") as f:
        json.dump(out, f, indent=1)


def stack_rm(lab, stack):
    """`docker stack rm`, then until its services are gone; its network is waited for 60 s at
    most (Swarm removes it once every node has let go of it, which a node healed from a cut
    can delay; a leftover network does not disturb the next stack, which has its own)."""
    lab.d(1, "stack", "rm", stack, check=False)
    wait_until(f"stack {stack}'s services removed", lambda: not services_named(lab, f"{stack}_"), timeout=120)

    def nets():
        return lab.d(1, "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}",
                     check=False).stdout.strip()

    try:
        wait_until(f"stack {stack}'s network removed", lambda: not nets(), timeout=60)
    except RuntimeError:
        log(f"  stack {stack}: its network is still there after 60 s; going on")
        lab.d(1, "network", "rm", *nets().split(), check=False)


def bench_deploy(b, lab, reps):
    log(f"\n=== 3. one Compose file ({', '.join(f'{s}: {n}' for s, n in DEPLOY.items())} replicas):"
        " berth apply vs docker stack deploy ===")
    names = lab.node_names()
    berth, stack = [], []
    for k in range(-1, reps):  # -1: warm-up of both, not counted
        app, st = f"dep{k + 1}", f"st{k + 1}"
        f = write_file(b, f"deploy-{k + 1}.yaml", app_yaml(b, DEPLOY, version=f"d{k + 1}"), prefix=f"/{app}")
        if k == -1:
            log(f"  the file:\n{open(f).read()}")
        order = ["berth", "stack"] if k % 2 == 0 else ["stack", "berth"]
        for who in order:
            if who == "berth":
                r = deploy_berth(b, lab, f, app, names)
                log(f"  berth apply{' (warm-up)' if k < 0 else f' {k + 1}'}: returned {r[0] if r[0] is None else f'{r[0]:.2f} s'}, every task"
                    f" answers {r[1] if r[1] is None else f'{r[1]:.2f} s'}, route through the gateway"
                    f" {r[2] if r[2] is None else f'{r[2]:.2f} s'}")
                keep_specs(b, lab, names, app, services_named(lab, f"_{app}_"))
                berth_rm(b, lab, app)
                if k >= 0:
                    berth.append(r)
            else:
                r = deploy_stack(b, lab, f, st, names)
                log(f"  docker stack deploy{' (warm-up)' if k < 0 else f' {k + 1}'}: returned {r[0]:.2f} s,"
                    f" every task answers {r[1] if r[1] is None else f'{r[1]:.2f} s'}")
                keep_specs(b, lab, names, st, [f"{st}_{s}" for s in DEPLOY])
                stack_rm(lab, st)
                if k >= 0:
                    stack.append(r)
    return berth, stack


# --------------------------------------------------------------------------------------------


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                    formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="1,2,3", help="which benchmarks, e.g. 1,3")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--net", default="192.168.78", help="the lab's network (SW_NET)")
    a = ap.parse_args()
    only = {int(x) for x in a.only.split(",") if x.strip()}
    if a.nodes < 2:
        raise SystemExit("--nodes: at least 2")
    b = common.Bench(build=not a.no_build, berth_log=a.berth_log)
    lab = common.SwarmLab(b.short, net=a.net)
    results = {}
    try:
        b.print_versions()
        b.prepare()
        log(f"\nlab: {a.nodes} nodes, namespaces {lab.prefix}*, network {lab.net}.0/24, base {lab.base}")
        t = now()
        lab.up(a.nodes, images=[b.image])
        log(f"  lab up in {now() - t:.1f} s; node engine {lab.d(1, 'version', '--format', '{{.Server.Version}}').stdout.strip()}")
        lab.enter_hub()
        extra = ["--runtime", "swarm", "--node-gateway-port", str(GW_PORT)]
        for i in range(2, a.nodes + 1):
            extra += ["--node-engine", f"node{i}=unix://{lab.socket(i)}"]
        b.start_berth(extra, api_host=lab.hub_addr, env={"DOCKER_HOST": f"unix://{lab.socket(1)}"})
        # the CLI reads <data-dir>/admin.token only for a loopback server: hand it the token
        os.environ["BERTH_TOKEN"] = b.api_headers()["Authorization"].split(" ", 1)[1]
        # the gateway on the manager: made (its image loaded) at the first application
        t = now()
        f = write_file(b, "warm.yaml", app_yaml(b, {"web": 1}, version="w"), prefix="/warm")
        b.berth("apply", "-f", f, "--app", "warm")
        wait_route(lab, "/warm/")
        log(f"  node1's gateway answers {now() - t:.1f} s after the first apply")
        berth_rm(b, lab, "warm")
        if 1 in only:
            results[1] = bench_cut(b, lab, a.reps, a.replicas, a.clients)
        if 2 in only:
            results[2] = bench_rollout(b, lab, a.reps, a.replicas, a.clients)
        if 3 in only:
            results[3] = bench_deploy(b, lab, a.reps)
        report(results, a)
        log(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    finally:
        keep_gateway_log(b, lab)
        b.cleanup()
        lab.down()


def keep_gateway_log(b, lab):
    """The manager's gateway container's log, into the work directory (the lab goes)."""
    if not lab._up or lab._down:
        return
    try:
        ids = lab.d(1, "ps", "-aq", "--filter", "label=berth.role=gateway", check=False).stdout.split()
        for cid in ids:
            out = lab.d(1, "logs", "--timestamps", cid, check=False)
            path = os.path.join(b.dir, f"gateway-node1-{cid[:12]}.log")
            with open(path, "w") as f:
                f.write(out.stdout + out.stderr)
            log(f"  the gateway's log kept at {path}")
    except Exception as e:  # noqa: BLE001
        log(f"  the gateway's log: {e}")


def report(results, a):
    log("\n== results (median (min–max))")
    rows = []
    if 1 in results:
        br, sw = results[1]
        pick = lambda k: [r[k] for r in br]  # noqa: E731
        rows.append(["1. cut: lost tasks out of Berth's rotation", common.fmt_stats(pick("out_of_rotation")), "", ""])
        rows.append(["1. cut: replicas run again on the survivors (Swarm's task list)",
                     common.fmt_stats(pick("swarm_running")), common.fmt_stats(sw),
                     f"{common.ratio(pick('swarm_running'), sw):.2f}" if common.ratio(pick('swarm_running'), sw) else ""])
        rows.append(["1. cut: ... as Berth reports (running, in rotation)", common.fmt_stats(pick("berth_running")),
                     common.fmt_stats(sw),
                     f"{common.ratio(pick('berth_running'), sw):.2f}" if common.ratio(pick('berth_running'), sw) else ""])
        rows.append(["1. cut: first answer from a replacement (gateway)", common.fmt_stats(pick("new_answer")), "", ""])
        rows.append(["1. cut: requests answered / failed / slowed > 1 s",
                     f"{sum(pick('answered'))} / {sum(pick('failed'))} / {sum(pick('slow'))}", "", ""])
        rows.append(["1. cut: last slowed request started after the cut",
                     common.fmt_stats([r for r in pick("last_slow")]), "", ""])
    if 2 in results:
        br, sw = results[2]
        done, only = [x[1] for x in sw], [x[0] for x in sw]
        rows.append(["2. rollout: berth apply returns / Swarm's UpdateStatus completed",
                     common.fmt_stats([r["apply"] for r in br]), common.fmt_stats(done),
                     f"{common.ratio([r['apply'] for r in br], done):.2f}"])
        rows.append(["2. rollout: last old answer (gateway) / only new tasks run",
                     common.fmt_stats([r["last_old"] for r in br]), common.fmt_stats(only),
                     f"{common.ratio([r['last_old'] for r in br], only):.2f}"])
        rows.append(["2. rollout: requests answered / failed",
                     f"{sum(r['answered'] for r in br)} / {sum(r['failed'] for r in br)}", "n/a (no front door)", ""])
    if 3 in results:
        br, st = results[3]
        ba, sa = [r[1] for r in br], [r[1] for r in st]
        rows.append(["3. deploy: every task runs and answers", common.fmt_stats(ba), common.fmt_stats(sa),
                     f"{common.ratio(ba, sa):.2f}" if common.ratio(ba, sa) else ""])
        rows.append(["3. deploy: command returned", common.fmt_stats([r[0] for r in br]),
                     common.fmt_stats([r[0] for r in st]), ""])
        rows.append(["3. deploy: route answers through the gateway", common.fmt_stats([r[2] for r in br]), "", ""])
    log(common.table(rows, ["figure", "Berth", "Swarm alone / stack deploy", "ratio"]))


if __name__ == "__main__":
    sys.exit(main())

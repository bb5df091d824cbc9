#!/usr/bin/env python3
"""Rebuild benchmark: a no-change rebuild and a one-file change, Berth vs plain `docker build`.

Berth:  `berth build NAME --follow` of a service registered from a local Git repository
        (`berth service create NAME --git DIR`). This is Berth's whole build path as a user runs
        it: queue, `git clone` into a fresh workspace, pipeline (the default one-step Dockerfile
        build), context tar, `POST /build` on the engine (legacy builder, layer cache reused), tag
        `berth/NAME:VERSION`, record the version, stream the log until the end. The timer runs
        from the start of the CLI until it exits. The one-file change is committed first (a
        user's `git commit`, not timed): Berth builds commits, not working trees. Also recorded,
        from the build record and its log: the server-side build time (queued -> finished) and
        the image step alone ("step build succeeded in ...": the default pipeline's one step, the engine build incl. the context
        tar).
docker: `docker build -t TAG DIR` of the same files (same Dockerfile, same `.dockerignore`
        leaving out `.git`), with DOCKER_BUILDKIT=0 (the legacy builder, what Berth uses) and,
        when the CLI supports it, DOCKER_BUILDKIT=1.

Fairness: the engine's layer cache is shared, so each tool builds FROM its own base image (a
busybox rootfs from /bin/busybox, `docker import`ed once per tool: same content, distinct image
IDs), so no tool ever hits a layer another one built. The context: a Dockerfile with 7 steps
(RUN, COPY of ~8 MB of "vendored" files, COPY of static files, RUN, COPY of the source, RUN,
ENV). Per repetition: (b) write one source file with new content (the same in every tool's copy;
Berth's is committed), each tool builds once (a one-file change); then (a) each tool builds
again with nothing changed. The tool order rotates between repetitions. Nothing is pulled.

Everything created carries the label berth.test=bench-<run id> (images: --label for docker, the
server's --label for Berth's) and is removed at the end, also on SIGINT/SIGTERM.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

import common
from common import log, now, run

DOCKERFILE = """FROM {base}
RUN mkdir -p /app/data && echo built > /app/data/stamp
COPY vendor/ /app/vendor/
COPY static/ /app/static/
RUN find /app/vendor -type f | wc -l > /app/data/vendor-count
COPY src/ /app/src/
RUN wc -c /app/src/*/* > /app/data/src-size
ENV APP_HOME=/app
CMD ["cat", "/app/data/src-size"]
"""


def busybox_rootfs_tar(path):
    """A tar with /bin/busybox and its applets as symlinks (what `docker import` takes)."""
    import tarfile
    bb = "/bin/busybox"
    if not os.path.isfile(bb):
        raise SystemExit("/bin/busybox missing: apt-get install busybox-static")
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True).stdout.split()
    with tarfile.open(path, "w") as t:
        t.add(bb, arcname="bin/busybox")
        for a in applets:
            if a == "busybox":
                continue
            ti = tarfile.TarInfo(f"bin/{a}")
            ti.type = tarfile.SYMTYPE
            ti.linkname = "busybox"
            ti.mode = 0o777
            t.addfile(ti)
        for d in ("tmp", "app"):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o777
            t.addfile(ti)


def write_context(root, base, seed):
    """The build context: vendor/ (~8 MB in 160 files), static/ (40 files), src/ (5 files)."""
    rnd = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(base=base))
    with open(os.path.join(root, ".dockerignore"), "w") as f:
        f.write(".git\n")
    for d, n, size in (("vendor", 160, 50_000), ("static", 40, 4_000), ("src", 5, 2_000)):
        for i in range(n):
            sub = os.path.join(root, d, f"m{i % 8}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"f{i}.dat"), "wb") as f:
                f.write(rnd.randbytes(size))


CHANGED = os.path.join("src", "m0", "f0.dat")


def git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com")
    run(["git", "-C", repo, *args], env=env, quiet=True)


def timed(cmd, env=None):
    t0 = now()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    dt = now() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, p.stdout


def parse_duration(text):
    """`532.1ms`, `1.2s`, `80.0µs` -> seconds."""
    m = re.match(r"([0-9.]+)(ns|µs|us|ms|s)$", text)
    if not m:
        return None
    v = float(m.group(1))
    return v * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def rfc3339(s):
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class Tools:
    def __init__(self, b, service, dirs, bases, buildkit):
        self.b, self.service, self.dirs, self.bases, self.buildkit = b, service, dirs, bases, buildkit

    def save(self, name, text):
        self.n = getattr(self, "n", 0) + 1
        with open(os.path.join(self.b.dir, f"{self.n:02d}-{name}.log"), "w") as f:
            f.write(text)

    def berth(self):
        dt, out = timed([common.BERTH_BIN, "build", self.service, "--follow"],
                        env=dict(os.environ, BERTH_SERVER=f"http://{self.b.api}"))
        self.save("berth", out)
        # the build record (server side) and the image step's own time, from the log
        builds = json.loads(self.b.berth("builds", self.service, "--output", "json", quiet=True).stdout)
        last = builds[0]
        server = rfc3339(last["finished_at"]) - rfc3339(last["created_at"])
        m = re.search(r"step build succeeded in (\S+)", out)
        image = parse_duration(m.group(1)) if m else None
        return dt, server, image

    def docker(self, kind):
        env = dict(os.environ, DOCKER_BUILDKIT="1" if kind == "buildkit" else "0")
        dt, out = timed(["docker", "build", "--label", self.b.label, "-t",
                         f"berth-bench/rebuild-{kind}:{self.b.short}", self.dirs[kind]], env=env)
        self.save(kind, out)
        return dt


def main():
    ap = common.common_args(argparse.ArgumentParser(description=__doc__,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-buildkit", action="store_true", help="skip the DOCKER_BUILDKIT=1 peer")
    args = ap.parse_args()

    b = common.Bench(build=not args.no_build, berth_log=args.berth_log)
    try:
        b.print_versions()
        if b.build:
            log(f"building berth (profile {common.PROFILE})")
            run(common.BUILD_BERTH, timeout=3600)
        if not os.path.exists(common.BERTH_BIN):
            raise SystemExit(f"missing {common.BERTH_BIN}: build it or drop --no-build")
        kinds = ["berth", "legacy"]
        buildkit = not args.no_buildkit
        if buildkit:
            kinds.append("buildkit")

        # one base image per tool: same rootfs, distinct image IDs (disjoint layer caches)
        rootfs = os.path.join(b.dir, "rootfs.tar")
        busybox_rootfs_tar(rootfs)
        bases = {}
        for k in kinds:
            ref = f"berth-bench/busybox-{k}:{b.short}"
            run(["docker", "import", "--change", f"LABEL {b.label}", "--message", f"{b.id} {k}",
                 rootfs, ref], quiet=True)
            bases[k] = ref
            time.sleep(1.1)  # distinct `created` second, so distinct IDs even for equal content
        ids = {run(["docker", "image", "inspect", "-f", "{{.Id}}", r], quiet=True).stdout.strip()
               for r in bases.values()}
        if len(ids) != len(bases):
            raise SystemExit("the base images share an ID; the caches would not be disjoint")

        dirs = {}
        for k in kinds:
            dirs[k] = os.path.join(b.dir, f"ctx-{k}")
            write_context(dirs[k], bases[k], seed=42)
        git(dirs["berth"], "init", "-q", "-b", "main")
        git(dirs["berth"], "add", ".")
        git(dirs["berth"], "commit", "-q", "-m", "initial")
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(dirs["legacy"])
                   for f in fs)
        log(f"build outputs are kept in {b.dir}/NN-TOOL.log")
        log(f"context: {size / 1e6:.1f} MB in {sum(len(fs) for _, _, fs in os.walk(dirs['legacy']))} files; "
            f"Dockerfile:\n{DOCKERFILE.format(base='<base per tool>')}")

        b.start_berth()
        service = f"rb{b.short}"
        b.berth("service", "create", service, "--git", dirs["berth"])
        tools = Tools(b, service, dirs, bases, buildkit)

        # warm-up: first (cold) build of every tool, not counted
        log("warm-up builds (cold, not counted)")
        tools.berth()
        for k in list(kinds[1:]):
            try:
                tools.docker(k)
            except RuntimeError as e:
                if k != "buildkit":
                    raise
                log(f"BuildKit unavailable here, peer dropped: {str(e).strip()[:300]}")
                kinds.remove(k)

        res = {(k, case): [] for k in kinds for case in ("change", "nochange")}
        berth_server = {"change": [], "nochange": []}
        berth_image = {"change": [], "nochange": []}
        for rep in range(args.reps):
            content = f"change {rep} {random.random()}\n".encode() * 100
            for k in kinds:
                with open(os.path.join(dirs[k], CHANGED), "wb") as f:
                    f.write(content)
            git(dirs["berth"], "commit", "-q", "-am", f"change {rep}")
            order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
            for case in ("change", "nochange"):
                for k in order:
                    if k == "berth":
                        dt, server, image = tools.berth()
                        berth_server[case].append(server)
                        berth_image[case].append(image)
                    else:
                        dt = tools.docker(k)
                    res[(k, case)].append(dt)
                log(f"rep {rep + 1}/{args.reps} {case:9s} " + "  ".join(
                    f"{k}={res[(k, case)][-1]:.3f}s" for k in kinds)
                    + f"  (berth server {berth_server[case][-1]:.3f}s, image step "
                      f"{berth_image[case][-1] if berth_image[case][-1] is not None else float('nan'):.3f}s)")

        log("")
        rows = []
        goals = {"nochange": 1.1, "change": 1.0}
        names = {"nochange": "(a) no-change rebuild", "change": "(b) one-file change"}
        for case in ("nochange", "change"):
            for k in kinds:
                rows.append([names[case], {"berth": "berth build --follow", "legacy": "docker build (BUILDKIT=0)",
                                           "buildkit": "docker build (BUILDKIT=1)"}[k],
                             common.fmt_stats(res[(k, case)])])
            rows.append([names[case], "  berth: server-side build", common.fmt_stats(berth_server[case])])
            rows.append([names[case], "  berth: image step alone", common.fmt_stats(berth_image[case])])
        log(common.table(rows, ["case", "tool", "median (min–max, n)"]))
        log("")
        for case in ("nochange", "change"):
            for peer in kinds[1:]:
                r = common.ratio(res[("berth", case)], res[(peer, case)])
                r_img = common.ratio(berth_image[case], res[(peer, case)])
                log(f"{names[case]}: berth / docker build ({peer}) = {r:.2f}  "
                    f"(goal ≤ {goals[case]}: {'met' if r <= goals[case] else 'NOT met'}); "
                    f"image step alone / docker = {r_img:.2f}")
        return 0
    finally:
        b.cleanup()
        # child images first: `rmi -f` of a parent with children fails, so go again
        for _ in range(3):
            p = run(["docker", "images", "-q", "--filter", f"label={b.label}"], check=False, quiet=True)
            if not p.stdout.split():
                break
            run(["docker", "rmi", "-f", *sorted(set(p.stdout.split()))], check=False, quiet=True)


if __name__ == "__main__":
    sys.exit(main())

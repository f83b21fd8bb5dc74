#!/usr/bin/env python3
"""The server-side deploy program: git's post-receive hook, and the client's one-exec entry point.

Runs on the server with only git, sh and python3 (stdlib, 3.9+); prepare.py copies it to
`<root>/.bridge/hook.py` beside the other server modules (prepare.SERVER_FILES): procs.py runs
programs, releases.py builds and prunes releases, deps.py installs, apps.py and front.py run the
app. This file is the deploy's steps and the entry points. Modes:

  hook.py [--post-receive]     read `old new ref` lines from git and deploy each deployable ref
  hook.py --deploy SHA [--ref REF]   deploy a commit again (a push of an unchanged ref fires no hook)
  hook.py --rollback [RELEASE] switch `current` to the previous (or named) release
  hook.py --list | --status    print JSON for the client

Output streams line by line; lines starting `bridge:step ` and `bridge:done ` carry JSON for
the client (git relays them as `remote: ...`). post-receive runs after the ref moved, so a
failed deploy cannot un-push: git's own exit code stays 0 and the `bridge:done` line (and this
program's exit code, for --deploy) is the verdict.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import errno
import fcntl
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # every push starts this program: typing, hashlib and shutil load only when used
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Iterator

try:  # installed on the server: the modules of prepare.SERVER_FILES sit beside this file
    import apps
    import deps
    import front
    from layout import RELEASE_TMP_PREFIX, Layout, ServerError, release_name, remove_tree
    from procs import Cancelled, StepFailed, clean_env, detach, emit, git, marker, stream, utc_now
    from releases import (build_tree, clear_unfinished, complete_releases, prune, read_meta, switch_current,
                          write_json_atomic)
except ImportError:  # imported from the bridge package
    from . import apps, deps, front
    from .layout import RELEASE_TMP_PREFIX, Layout, ServerError, release_name, remove_tree
    from .procs import Cancelled, StepFailed, clean_env, detach, emit, git, marker, stream, utc_now
    from .releases import (build_tree, clear_unfinished, complete_releases, prune, read_meta, switch_current,
                           write_json_atomic)

ZERO_SHA = "0" * 40
TAIL_LINES = 20
LOW_DISK_BYTES = 1 << 20
DEPLOYABLE_PREFIXES = ("refs/heads/", "refs/bridge/wip/")


# ---------------------------------------------------------------- settings and locking


def load_settings(layout: Layout) -> dict:
    """deploy.json, which prepare writes whole from schema.py beside this hook; without one, that
    schema's defaults. A broken file is a failed deploy, not a crash."""
    try:
        return json.loads(layout.settings.read_text())
    except FileNotFoundError:
        try:
            import schema
        except ImportError:  # imported from the bridge package
            from . import schema
        return schema.defaults()
    except ValueError as e:
        raise StepFailed("%s is not valid JSON: %s" % (layout.settings, e))


class Lock:
    """An exclusive fcntl lock on .bridge/lock: pushes queue and deploy one at a time, in turn."""

    def __init__(self, layout: Layout) -> None:
        self.path = layout.lock
        self.fh: IO | None = None

    def __enter__(self) -> "Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit("bridge: another deploy is running on this server; waiting for it to finish")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        self.fh.truncate(0)  # the holder's pid, for `--cancel`; the lock itself dies with this process
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.fh is not None
        self.fh.close()


# ---------------------------------------------------------------- dependencies


# ---------------------------------------------------------------- the deploy


class Deploy:
    """One deploy of one commit: runs the steps in order and records each."""

    def __init__(self, layout: Layout, sha: str, ref: str, start: str) -> None:
        self.layout, self.sha, self.ref, self.start = layout, sha, ref, start
        self.settings: dict = {}
        self.previous = layout.current_release()  # where a failure after the switch goes back to
        self.switched = False
        self.cancellable = False
        self.began = self.step_began = time.monotonic()
        self.steps: list = []
        self.tail: collections.deque = collections.deque(maxlen=TAIL_LINES)

    def time_left(self) -> float | None:
        """Seconds this step may still run: the nearer of deploy.step_timeout and deploy.timeout (0: none)."""
        now, limits = time.monotonic(), []
        if self.settings.get("timeout"):
            limits.append(self.began + float(self.settings["timeout"]) - now)
        if self.settings.get("step_timeout"):
            limits.append(self.step_began + float(self.settings["step_timeout"]) - now)
        return max(0.01, min(limits)) if limits else None

    def step(self, name: str, action: Callable[[], str | None]) -> None:
        """Run one step with markers around it; a failure is recorded and re-raised as StepFailed."""
        marker("step", {"step": name, "event": "start"})
        self.tail.clear()
        start = self.step_began = time.monotonic()
        ok, error = False, None
        try:
            note = action()
            if note:
                emit("bridge: " + note)
            ok = True
        except ServerError as e:
            error = str(e)
        except OSError as e:
            error = describe_os_error(e)
        finally:
            record = {"name": name, "duration": round(time.monotonic() - start, 3), "ok": ok,
                      "output": list(self.tail)}
            if error:
                record["error"] = error
            self.steps.append(record)
            marker("step", {"step": name, "event": "end", "ok": ok, "duration": record["duration"]})
        if error:
            raise StepFailed(error)

    def say(self, text: str) -> None:
        """A note of the running step, as the client shows it."""
        emit("bridge: " + text)

    def check(self, argv: list, cwd: Path, env: dict | None = None) -> None:
        """Run a program streaming its output; a non-zero exit (or running out of time) fails the step."""
        code = stream(argv, cwd, env or clean_env(), self.tail, self.time_left())
        if code != 0:
            label = argv[-1] if argv[:2] == ["sh", "-c"] else " ".join(argv[:4])
            raise StepFailed("%s exited with %d" % (label, code))


def disk_full_note(layout: Layout, error: str) -> str:
    """Name a full disk even when a child (git, pip) only said it could not write."""
    import shutil

    try:
        free = shutil.disk_usage(str(layout.root)).free
    except OSError:
        return ""
    if free >= LOW_DISK_BYTES or "ENOSPC" in error:
        return ""
    return " (disk full on the server: %d KiB free under %s; free space, then push again)" % (
        free // 1024, layout.root)


def describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "disk full on the server (ENOSPC) at %s: free space, then push again" % (e.filename or "?")
    return "%s: %s" % (e.strerror or type(e).__name__, e.filename or "")


def command_env(ctx: Deploy, release: Path, process: str | None = None) -> dict:
    """The app's environment (apps.app_env: config, venv and node_modules/.bin first on PATH), as the
    processes and `bridge exec` see it."""
    result = apps.app_env(ctx.layout, release, ctx.settings, clean_env(), process)
    result["BRIDGE_SHA"] = ctx.sha
    return result


def run_deploy(layout: Layout, sha: str, ref: str) -> int:
    """Deploy one commit under the lock; returns the exit code (0 ok, 1 failed)."""
    with Lock(layout):
        start = utc_now()
        name = unique_name(layout, sha, start)
        ctx = Deploy(layout, sha, ref, start.isoformat())
        summary: dict[str, Any] = {"action": "deploy", "sha": sha, "ref": ref, "release": name,
                   "start": start.isoformat(), "deps": "none", "result": "ok"}
        try:
            ctx.settings = load_settings(layout)
            clear_unfinished(layout)
            cancel_on_term(ctx)
            ctx.cancellable = True
            deploy_steps(ctx, name, summary)
            ctx.cancellable = False
        except StepFailed as e:
            ctx.cancellable = False
            summary.update(result="failed", failed_step=ctx.steps[-1]["name"] if ctx.steps else "settings",
                           error=str(e) + disk_full_note(layout, str(e)))
            if ctx.switched:
                summary["reverted_to"] = revert(ctx, name)
            discard(layout, name)
            report_failure(summary, ctx)
        summary.update(duration=round((utc_now() - start).total_seconds(), 3), steps=ctx.steps)
        append_log(layout, summary)
        marker("done", summary)
    return 0 if summary["result"] == "ok" else 1


def cancel_on_term(ctx: Deploy) -> None:
    """SIGTERM (`bridge deploy cancel`) fails the running step, once; the clean-up after it is not cut short."""
    import signal

    def handler(signum: int, frame: object) -> None:
        if ctx.cancellable:
            ctx.cancellable = False
            raise Cancelled("cancelled by `bridge deploy cancel`")

    signal.signal(signal.SIGTERM, handler)


def discard(layout: Layout, name: str) -> None:
    """Remove a failed release and its meta; `current` does not point at it (any more)."""
    if layout.current_release() == name:
        return
    remove_tree(layout.release(name))
    remove_tree(layout.release(RELEASE_TMP_PREFIX + name))
    remove_tree(layout.meta_file(name))


def unique_name(layout: Layout, sha: str, now: datetime.datetime) -> str:
    """A fresh release name; a re-deploy of the same sha in the same second gets a suffix."""
    base = name = release_name(sha, now)
    n = 1
    while layout.release(name).exists() or layout.meta_file(name).exists():
        n += 1
        name = "%s-%d" % (base, n)
    return name


def deploy_steps(ctx: Deploy, name: str, summary: dict) -> None:
    """checkout, deps, commands, `release:`, switch, restart the processes, healthcheck, prune.

    With processes the healthcheck asks the running new release, after the switch (a failure
    switches back); without, it runs in the release before the switch.
    """
    layout, sha = ctx.layout, ctx.sha
    release, tmp = layout.release(name), layout.release(RELEASE_TMP_PREFIX + name)
    env = deps.Env()

    def checkout() -> str:
        note = build_tree(layout, sha, tmp)  # a sha that is no commit fails here, in git's words
        os.rename(tmp, release)
        return note

    ctx.step("checkout", checkout)
    if ctx.settings.get("shared"):
        ctx.step("shared", lambda: link_shared(layout, release, ctx.settings["shared"]))
    processes = read_processes(ctx, release)
    dependency_steps(ctx, release, env)
    summary["deps"] = env.status()
    cmd_env = command_env(ctx, release)
    for command in ctx.settings.get("commands") or []:
        ctx.step("run: " + command, functools.partial(ctx.check, ["sh", "-c", command], release, cmd_env))
    if apps.ONE_OFF in processes:
        ctx.step("release", lambda: ctx.check(["sh", "-c", processes[apps.ONE_OFF]], release, cmd_env))
    running = apps.services(processes)
    if running:
        ctx.step("systemd", lambda: apps.check_supervisor(ctx.settings))
    elif ctx.settings.get("healthcheck"):
        ctx.step("healthcheck", lambda: ctx.check(["sh", "-c", ctx.settings["healthcheck"]], release, cmd_env))
    ctx.step("switch", lambda: finish(layout, name, ctx))
    if running or apps.installed_processes(layout):
        ctx.step("restart", lambda: apps.activate(layout, ctx.settings, name, web="start"))
    if running and ctx.settings.get("healthcheck"):
        ctx.step("healthcheck", lambda: running_healthcheck(ctx, release))
    if front.pending_port(layout):
        ctx.step("front", lambda: front.switch(layout, ctx.settings, apps.Systemd.here()))
    ctx.step("prune", lambda: prune_quietly(layout, int(ctx.settings["keep_releases"])))


def link_shared(layout: Layout, release: Path, entries: list) -> str:
    """Link each deploy.shared path of the release to <root>/shared/PATH, which outlives every release.

    The first deploy seeds shared/ with the release's own copy if it has one; after that the
    release's copy is dropped for the link. An entry that exists nowhere yet is made: an empty file
    when its last part has a dot and no trailing `/` (`.env`, `db.sqlite3`), else a directory.
    """
    for entry in entries:
        relative = shared_path(entry)
        inside, kept = release / relative, layout.shared / relative
        if not (kept.exists() or kept.is_symlink()):
            kept.parent.mkdir(parents=True, exist_ok=True)
            if inside.exists() and not inside.is_symlink():
                os.rename(str(inside), str(kept))
            elif "." in os.path.basename(relative) and not entry.endswith("/"):
                kept.touch()
            else:
                kept.mkdir()
        remove_tree(inside)
        inside.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(str(kept), str(inside))
    return "linked from shared/: " + ", ".join(entries)


def shared_path(entry: str) -> str:
    """A deploy.shared entry as a clean relative path; StepFailed for one that leaves the release."""
    relative = os.path.normpath(entry.strip("/")) if entry.strip("/") else ""
    if not relative or relative == "." or entry.startswith("/") or relative.split(os.sep)[0] == "..":
        raise StepFailed("deploy.shared entry %r: name a path inside the workspace, like instance or .env" % entry)
    return relative


def read_processes(ctx: Deploy, release: Path) -> dict:
    """The release's processes (Procfile or deploy.processes); a bad Procfile fails its own step."""
    found: dict = {}

    def read() -> str | None:
        found.update(apps.release_processes(release, ctx.settings))
        return "processes: " + ", ".join(sorted(found)) if found else None

    if (release / "Procfile").is_file() or ctx.settings.get("processes"):
        ctx.step("processes", read)
    return found


def running_healthcheck(ctx: Deploy, release: Path) -> str:
    """Ask the restarted processes: the HTTP path on web_port (or web's new slot, before the front
    switches to it), or the command with that $PORT, until it passes."""
    check = ctx.settings["healthcheck"]
    env = command_env(ctx, release, apps.WEB)
    port = front.pending_port(ctx.layout)
    if port:
        env["PORT"] = str(port)

    def run_command() -> bool:
        proc = subprocess.run(["sh", "-c", check], cwd=str(release), env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ctx.tail.clear()
        ctx.tail.extend(proc.stdout.decode(errors="replace").splitlines())
        return proc.returncode == 0

    apps.healthcheck(check, ctx.settings, run_command, port)
    return "healthcheck passed: " + check


def revert(ctx: Deploy, name: str) -> str | None:
    """After a failure past the switch: `current` back to the previous release, its processes restarted.

    Web behind the front never stopped serving the previous release: only the new slot stops."""
    layout, previous = ctx.layout, ctx.previous
    try:
        systemd = apps.Systemd.here()
        front.abandon(layout, ctx.settings, systemd)
        serving = front.read_state(layout)["active"] is not None
        if previous and layout.release(previous).is_dir():
            switch_current(layout, previous)
            apps.activate(layout, ctx.settings, previous, web="keep" if serving else "switch")
            return previous
        layout.current.unlink()
        front.teardown(layout, ctx.settings, systemd)
        apps.install_units(layout, ctx.settings, {}, systemd)
    except (OSError, ServerError) as e:
        emit("bridge: could not switch back: %s" % e)
    return None


def prune_quietly(layout: Layout, keep: int) -> str:
    """Pruning after the switch must not turn a live deploy into a failed one: report, don't raise."""
    try:
        return "removed %d old release(s)" % len(prune(layout, keep))
    except OSError as e:
        return "could not prune old releases: " + describe_os_error(e)


def dependency_steps(ctx: Deploy, release: Path, env: deps.Env) -> None:
    mode = ctx.settings.get("install") or "auto"
    if mode not in ("auto", "none", "pip", "npm"):
        raise_in_step(ctx, "deps", "deploy.install is %r; use auto, none, pip or npm" % mode)
    if mode in ("auto", "pip") and deps.has_python_manifest(release, ctx.settings):
        ctx.step("deps:python", lambda: deps.install_python(ctx, release, env))
    if mode in ("auto", "npm") and deps.has_node_manifest(release, ctx.settings):
        ctx.step("deps:node", lambda: deps.install_node(ctx, release, env))


def raise_in_step(ctx: Deploy, name: str, message: str) -> None:
    def fail() -> None:
        raise StepFailed(message)
    ctx.step(name, fail)


def finish(layout: Layout, name: str, ctx: Deploy) -> str:
    """Mark the release complete, then switch `current` to it."""
    layout.meta.mkdir(parents=True, exist_ok=True)
    write_json_atomic(layout.meta_file(name), {"sha": ctx.sha, "ref": ctx.ref, "time": ctx.start})
    switch_current(layout, name)
    ctx.switched = True
    follow_branch(layout, ctx.ref)
    return "current -> releases/" + name


def follow_branch(layout: Layout, ref: str) -> None:
    """Point repo.git's HEAD at the deployed branch, so a clone of it checks that branch out."""
    if not ref.startswith("refs/heads/"):
        return
    try:
        if (layout.repo / "HEAD").read_text().strip() == "ref: " + ref:
            return
    except OSError:
        pass
    git(layout, "symbolic-ref", "HEAD", ref)


def report_failure(summary: dict, ctx: Deploy) -> None:
    emit("bridge: deploy FAILED at step %r: %s" % (summary["failed_step"], summary["error"]))
    if ctx.steps and ctx.steps[-1]["output"]:
        emit("bridge: last lines of %r:" % summary["failed_step"])
        for line in ctx.steps[-1]["output"]:
            emit("    " + line)
    if "reverted_to" not in summary:
        emit("bridge: `current` is unchanged")
    elif summary["reverted_to"]:
        emit("bridge: `current` is back on releases/%s and its processes were restarted" % summary["reverted_to"])
    else:
        emit("bridge: the first release failed: `current` and the processes were removed")


def append_log(layout: Layout, entry: dict) -> None:
    """One JSON line per deploy or rollback; a full disk costs the log line, not the deploy's verdict."""
    try:
        layout.state.mkdir(parents=True, exist_ok=True)
        with open(layout.deploys_log, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
    except OSError as e:
        emit("bridge: could not append to %s: %s" % (layout.deploys_log, describe_os_error(e)))


# ---------------------------------------------------------------- post-receive


def pushed_refs(lines: Iterator[str]) -> list:
    """(new sha, ref) for each updated ref in git's post-receive input, deletions skipped."""
    refs = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[1] != ZERO_SHA:
            refs.append((parts[1], parts[2]))
    return refs


def deployable(ref: str, branch: str | None) -> bool:
    """A branch (or its --wip snapshot ref); only the pinned branch when deploy.json names one."""
    if branch:
        return ref in ("refs/heads/" + branch, "refs/bridge/wip/" + branch)
    return ref.startswith(DEPLOYABLE_PREFIXES)


def push_options() -> list:
    """`git push -o X` values (prepare sets receive.advertisePushOptions)."""
    count = int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0") or 0)
    return [os.environ.get("GIT_PUSH_OPTION_%d" % i, "") for i in range(count)]


def post_receive(layout: Layout, stdin: IO) -> int:
    try:
        return deploy_pushed(layout, stdin)
    finally:
        # receive.autogc is off (install.py): git would run this check after us, before the push returns
        detach(["git", "--git-dir", str(layout.repo), "gc", "--auto", "--quiet"])


def deploy_pushed(layout: Layout, stdin: IO) -> int:
    if "bridge.no-deploy" in push_options():
        emit("bridge: push option bridge.no-deploy given; not deploying")
        return 0
    try:
        branch = load_settings(layout).get("branch")
    except StepFailed as e:
        emit("bridge: " + str(e))
        return 1
    code = 0
    for sha, ref in pushed_refs(iter(stdin.readline, "")):
        if deployable(ref, branch):
            code = max(code, run_deploy(layout, sha, ref))
        else:
            emit("bridge: %s is not deployed here (deploy.json pins branch %r)" % (ref, branch))
    return code


# ---------------------------------------------------------------- rollback, list, status


def release_info(layout: Layout, name: str, current: str | None) -> dict:
    meta = read_meta(layout, name) or {}
    return {"release": name, "sha": meta.get("sha"), "ref": meta.get("ref"), "time": meta.get("time"),
            "current": name == current}


def list_releases(layout: Layout) -> list:
    current = layout.current_release()
    return [release_info(layout, n, current) for n in complete_releases(layout)]


def last_log_entry(layout: Layout) -> dict | None:
    try:
        with open(layout.deploys_log, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def status(layout: Layout) -> dict:
    current = layout.current_release()
    meta = read_meta(layout, current) if current else None
    return {"root": str(layout.root), "current": current, "sha": (meta or {}).get("sha"),
            "last": last_log_entry(layout)}


def previous_commit(layout: Layout, older: list, current: str) -> str | None:
    """The newest of `older` that holds another commit than `current` (a redeploy is no way back)."""
    sha = (read_meta(layout, current) or {}).get("sha")
    for name in reversed(older):
        if (read_meta(layout, name) or {}).get("sha") != sha:
            return name
    return None


def cancel(layout: Layout) -> int:
    """Stop the running deploy (SIGTERM to the lock's holder) and wait for it to end; `current` stays."""
    import signal

    pid = running_deploy(layout)
    if pid is None:
        marker("done", {"action": "cancel", "result": "ok", "cancelled": None, "current": layout.current_release()})
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and pid_exists(pid):
        time.sleep(0.1)
    gone = not pid_exists(pid)
    marker("done", {"action": "cancel", "result": "ok" if gone else "failed", "cancelled": pid,
                    "current": layout.current_release(),
                    **({} if gone else {"error": "deploy process %d still runs 60 s after SIGTERM" % pid})})
    return 0 if gone else 1


def running_deploy(layout: Layout) -> int | None:
    """The pid holding the deploy lock, or None when no deploy runs (the lock can be taken)."""
    try:
        fh = open(layout.lock, "r")
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            text = fh.read().strip()
    return int(text) if text.isdigit() else None


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def rollback(layout: Layout, target: str | None) -> int:
    """Switch `current` to `target` or the release before it, under the deploy lock."""
    with Lock(layout):
        current = layout.current_release()
        names = complete_releases(layout)
        if target is None and current in names:
            target = previous_commit(layout, names[:names.index(current)], current)
        start = utc_now()
        entry = {"action": "rollback", "from": current, "release": target, "start": start.isoformat()}
        if target is None or target not in names:
            entry.update(result="failed", error="no release %s to roll back to" % (repr(target) if target else "older"))
        else:
            switch_current(layout, target)
            entry.update(result="ok", sha=(read_meta(layout, target) or {}).get("sha"))
            restart_after_rollback(layout, target, entry)
        entry["duration"] = round((utc_now() - start).total_seconds(), 3)
        append_log(layout, entry)
        marker("done", entry)
    return 0 if entry["result"] == "ok" else 1


def restart_after_rollback(layout: Layout, target: str, entry: dict) -> None:
    """The processes follow `current` back; a failure to restart them is the rollback's error."""
    try:
        note = apps.activate(layout, load_settings(layout), target)
        if note:
            emit("bridge: " + note)
    except ServerError as e:
        entry.update(result="failed", error="current -> %s, but the processes did not restart: %s" % (target, e))


# ---------------------------------------------------------------- main


def parse_args(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hook.py", description="bridge deploy hook")
    parser.add_argument("--root", help="deploy root (default: the parent of the dir holding this file)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--post-receive", action="store_true", help="read git's ref updates on stdin (default)")
    mode.add_argument("--deploy", metavar="SHA", help="deploy this commit (any rev git can resolve)")
    mode.add_argument("--rollback", nargs="?", const="", metavar="RELEASE", help="switch current back")
    mode.add_argument("--list", action="store_true", help="JSON list of releases")
    mode.add_argument("--status", action="store_true", help="JSON: current release and last deploy")
    mode.add_argument("--cancel", action="store_true", help="stop the running deploy; current stays")
    parser.add_argument("--ref", default="", help="with --deploy: the ref to record")
    parser.add_argument("--if-changed", action="store_true",
                        help="with --deploy: do nothing when the commit is the one `current` holds")
    return parser.parse_args(argv)


def main(argv: list | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    root = Path(args.root) if args.root else Path(__file__).resolve().parent.parent
    layout = Layout(root.absolute())
    if not (args.list or args.status or args.cancel):
        ignore_interrupt()
    if args.list:
        print(json.dumps(list_releases(layout)))
        return 0
    if args.status:
        print(json.dumps(status(layout)))
        return 0
    if args.rollback is not None:
        return rollback(layout, args.rollback or None)
    if args.cancel:
        return cancel(layout)
    if args.deploy:
        return deploy_rev(layout, args.deploy, args.ref, args.if_changed)
    return post_receive(layout, sys.stdin)


def ignore_interrupt() -> None:
    """A deploy never half-stops on the client's Ctrl-C (a local:// hook shares its process group);
    it ends by its own verdict, a timeout, or `bridge deploy cancel`."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def deploy_rev(layout: Layout, rev: str, ref: str, if_changed: bool = False) -> int:
    try:
        sha = git(layout, "rev-parse", "--verify", "--quiet", rev + "^{commit}").decode().strip()
    except StepFailed:
        emit("bridge: %r is not a commit in %s" % (rev, layout.repo))
        return 1
    current = layout.current_release()
    if if_changed and current and (read_meta(layout, current) or {}).get("sha") == sha:
        emit("bridge: %s is already deployed (releases/%s); `bridge push --redeploy` deploys it again"
             % (sha[:12], current))
        marker("done", {"action": "deploy", "result": "ok", "unchanged": True, "sha": sha, "release": current})
        return 0
    return run_deploy(layout, sha, ref)


if __name__ == "__main__":
    sys.exit(main())

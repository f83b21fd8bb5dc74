"""The server-side deploy hook, driven by real `git push` into a real bare repo on the local disk."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.config import DeployConfig
from bridge.server.layout import hook_argv
from bridge.sync.prepare import DeploySettings, prepare_root, run_local

NASTY = 'srv root "q" \'s\'; echo pwned'


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's ~/.gitconfig (hooks, signing, templates) out of every git we run."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "Test")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "test@example.com")


class Server:
    """A deploy root prepared exactly as `bridge init` would, plus helpers to read its state."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self, **settings: object) -> dict:
        return prepare_root(run_local, str(self.root), DeploySettings(DeployConfig(**settings)))  # type: ignore[arg-type]

    @property
    def current(self) -> Path:
        return self.root / "current"

    def current_name(self) -> str:
        return os.path.basename(os.readlink(self.current))

    def releases(self) -> list:
        return sorted(n for n in os.listdir(self.root / "releases") if not n.startswith("."))

    def log(self) -> list:
        path = self.root / ".bridge" / "deploys.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def hook(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(hook_argv(str(self.root), *args), capture_output=True, text=True)


class Workspace:
    """A developer's git repo that pushes to the server's repo.git."""

    def __init__(self, path: Path, server: Server) -> None:
        self.path, self.server = path, server
        path.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, check=True, capture_output=True, text=True).stdout

    def write(self, name: str, text: str) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def push(self, refspec: str = "HEAD:main", *options: str) -> "Pushed":
        proc = subprocess.run(["git", "push", *options, str(self.server.root / "repo.git"), refspec],
                              cwd=self.path, capture_output=True, text=True)
        return Pushed(proc.returncode, proc.stderr)


class Pushed:
    """What the pusher saw: git's exit code and the hook's `remote:` lines, markers parsed."""

    def __init__(self, code: int, stderr: str) -> None:
        self.code = code
        self.lines = [line[len("remote: "):].rstrip() for line in stderr.splitlines() if line.startswith("remote: ")]

    def markers(self, kind: str) -> list:
        prefix = "bridge:%s " % kind
        return [json.loads(line[len(prefix):]) for line in self.lines if line.startswith(prefix)]

    @property
    def done(self) -> dict:
        (summary,) = self.markers("done")
        return summary


@pytest.fixture
def server(tmp_path: Path) -> Server:
    srv = Server(tmp_path / NASTY)
    srv.prepare(keep_releases=5)
    return srv


@pytest.fixture
def ws(tmp_path: Path, server: Server) -> Workspace:
    return Workspace(tmp_path / "work space; 'x'", server)


def test_first_push_deploys_a_release_and_switches_current(server: Server, ws: Workspace) -> None:
    ws.write("app/main.py", "print('hi')\n")
    ws.write("README", "x\n")
    sha = ws.commit()
    pushed = ws.push()
    assert pushed.code == 0
    assert pushed.done["result"] == "ok" and pushed.done["sha"] == sha
    assert [m["step"] for m in pushed.markers("step") if m["event"] == "end"] == ["checkout", "switch", "prune"]
    assert os.readlink(server.current) == "releases/" + server.current_name()
    assert (server.current / "app" / "main.py").read_text() == "print('hi')\n"
    assert server.current_name().endswith("-" + sha[:12])
    (entry,) = server.log()
    assert entry["result"] == "ok" and entry["deps"] == "none" and entry["ref"] == "refs/heads/main"


def test_prepare_is_idempotent_and_keeps_deploys(server: Server, ws: Workspace) -> None:
    ws.write("a", "1\n")
    ws.commit()
    ws.push()
    report = server.prepare(keep_releases=3)
    assert report["created"] is False
    assert len(server.releases()) == 1 and len(server.log()) == 1
    assert json.loads((server.root / ".bridge" / "deploy.json").read_text())["keep_releases"] == 3
    autogc = subprocess.run(["git", "--git-dir", str(server.root / "repo.git"), "config", "receive.autogc"],
                            capture_output=True, text=True).stdout.strip()
    assert autogc == "false"  # the hook runs `gc --auto` itself, detached, so the push need not wait for it


def test_incremental_push_hardlinks_unchanged_files_and_never_touches_the_old_release(
        server: Server, ws: Workspace) -> None:
    ws.write("same.txt", "same\n")
    ws.write("changed.txt", "old\n")
    ws.write("gone/deleted.txt", "bye\n")
    ws.write("tool.sh", "echo\n")
    os.symlink("same.txt", ws.path / "link")
    ws.commit()
    ws.push()
    old = server.current.resolve()
    ws.write("changed.txt", "new\n")
    (ws.path / "gone" / "deleted.txt").unlink()
    ws.write("new dir/new file.txt", "fresh\n")
    os.chmod(ws.path / "tool.sh", 0o755)
    os.unlink(ws.path / "link")
    os.symlink("changed.txt", ws.path / "link")
    ws.commit()
    pushed = ws.push()
    new = server.current.resolve()
    assert pushed.done["result"] == "ok" and new != old
    assert (new / "same.txt").stat().st_ino == (old / "same.txt").stat().st_ino
    assert (new / "changed.txt").stat().st_ino != (old / "changed.txt").stat().st_ino
    assert (new / "changed.txt").read_text() == "new\n" and (old / "changed.txt").read_text() == "old\n"
    assert not (new / "gone").exists() and (old / "gone" / "deleted.txt").read_text() == "bye\n"
    assert (new / "new dir" / "new file.txt").read_text() == "fresh\n"
    assert os.access(new / "tool.sh", os.X_OK) and not os.access(old / "tool.sh", os.X_OK)
    assert os.readlink(new / "link") == "changed.txt" and os.readlink(old / "link") == "same.txt"


def test_failing_command_keeps_current_and_reports_the_step(server: Server, ws: Workspace) -> None:
    ws.write("a", "1\n")
    ws.commit()
    ws.push()
    good = server.current_name()
    server.prepare(commands=["echo preparing", "echo boom >&2; exit 3"])
    ws.write("a", "2\n")
    ws.commit()
    pushed = ws.push()
    assert pushed.code == 0  # post-receive cannot fail a push: the ref has already moved
    assert pushed.done["result"] == "failed"
    assert pushed.done["failed_step"] == "run: echo boom >&2; exit 3"
    assert "boom" in pushed.lines and any("FAILED" in line for line in pushed.lines)
    assert server.current_name() == good and server.releases() == [good]
    assert server.log()[-1]["steps"][-1]["output"] == ["boom"]


def test_deploy_flag_redeploys_an_unchanged_ref_and_exits_nonzero_on_failure(server: Server, ws: Workspace) -> None:
    ws.write("a", "1\n")
    sha = ws.commit()
    ws.push()
    first = server.current_name()
    again = server.hook("--deploy", sha, "--ref", "refs/heads/main")
    assert again.returncode == 0, again.stdout
    assert server.current_name() != first and server.current_name().startswith(first.split("-")[0][:8])
    server.prepare(commands=["false"])
    failed = server.hook("--deploy", "main")
    assert failed.returncode == 1 and '"result": "failed"' in failed.stdout
    assert server.hook("--deploy", "no-such-rev").returncode == 1


def test_concurrent_pushes_deploy_one_after_the_other(server: Server, ws: Workspace, tmp_path: Path) -> None:
    server.prepare(commands=["sleep 1"])
    ws.write("a", "main\n")
    main_sha = ws.commit()
    ws.git("checkout", "-q", "-b", "other")
    ws.write("a", "other\n")
    other_sha = ws.commit()
    procs = [subprocess.Popen(["git", "push", str(server.root / "repo.git"), ref], cwd=ws.path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for ref in ("main", "other")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    first, second = server.log()
    assert first["result"] == second["result"] == "ok"
    assert {first["sha"], second["sha"]} == {main_sha, other_sha}
    assert start_of(second) >= start_of(first) + first["duration"] - 0.01
    for entry in (first, second):
        content = (server.root / "releases" / entry["release"] / "a").read_text()
        assert content == ("main\n" if entry["sha"] == main_sha else "other\n")


def start_of(entry: dict) -> float:
    import datetime
    return datetime.datetime.fromisoformat(entry["start"]).timestamp()


def test_old_releases_are_pruned_to_keep_releases(server: Server, ws: Workspace) -> None:
    server.prepare(keep_releases=2)
    for n in range(4):
        ws.write("a", "%d\n" % n)
        ws.commit()
        ws.push()
    names = server.releases()
    assert len(names) == 2 and names[-1] == server.current_name()
    assert (server.current / "a").read_text() == "3\n"
    assert sorted(os.listdir(server.root / ".bridge" / "meta")) == [n + ".json" for n in names]
    trash = server.root / ".bridge" / "trash"  # pruned trees land here in one rename; `rm -rf` follows
    deadline = time.monotonic() + 30
    while os.listdir(trash) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(trash) == []


def test_rollback_list_and_status(server: Server, ws: Workspace) -> None:
    ws.write("a", "1\n")
    first_sha = ws.commit()
    ws.push()
    ws.write("a", "2\n")
    second_sha = ws.commit()
    ws.push()
    listed = json.loads(server.hook("--list").stdout)
    assert [(r["sha"], r["current"]) for r in listed] == [(first_sha, False), (second_sha, True)]
    rolled = server.hook("--rollback")
    assert rolled.returncode == 0
    assert (server.current / "a").read_text() == "1\n"
    status = json.loads(server.hook("--status").stdout)
    assert status["current"] == listed[0]["release"] and status["sha"] == first_sha
    assert status["last"]["action"] == "rollback" and status["last"]["from"] == listed[1]["release"]
    assert server.hook("--rollback").returncode == 1  # nothing older than the first release
    assert server.hook("--rollback", "nope").returncode == 1
    assert server.hook("--rollback", listed[1]["release"]).returncode == 0
    assert (server.current / "a").read_text() == "2\n"


def test_incremental_deploy_builds_on_current_after_a_rollback(server: Server, ws: Workspace) -> None:
    ws.write("a", "1\n")
    ws.write("b", "b\n")
    ws.commit()
    ws.push()
    ws.write("a", "2\n")
    ws.commit()
    ws.push()
    server.hook("--rollback")
    ws.write("c", "c\n")
    ws.commit()
    assert ws.push().done["result"] == "ok"
    assert sorted(os.listdir(server.current)) == ["a", "b", "c"] and (server.current / "a").read_text() == "2\n"


def test_branch_pin_and_no_deploy_push_option(server: Server, ws: Workspace) -> None:
    server.prepare(branch="main")
    ws.write("a", "1\n")
    ws.commit()
    assert not ws.push("HEAD:feature").markers("done")
    assert ws.push("HEAD:main", "-o", "bridge.no-deploy").markers("done") == []
    assert not server.current.exists()
    ws.write("a", "2\n")
    ws.commit()
    assert ws.push().done["ref"] == "refs/heads/main"


def test_server_files_parse_as_python_39() -> None:
    import ast

    from bridge.sync.prepare import SERVER_FILES
    here = Path(__file__).resolve().parents[2] / "bridge" / "server"
    for name in (*SERVER_FILES, "install.py", "scripts.py"):
        ast.parse((here / name).read_text(), feature_version=(3, 9))
    from bridge.server import scripts  # and the text it sends for the server's python3 -c
    for text in (scripts._TIMEOUT_WRAPPER, scripts._SIGNAL_RUN, scripts.UNIX_RELAY):
        ast.parse(text, feature_version=(3, 9))


def test_the_one_schema_gives_the_same_defaults_on_the_servers_python_39(tmp_path: Path) -> None:
    """schema.py is what config.py parses bridge.yaml into and what the hook falls back on, stdlib-only."""
    py39 = Path("/root/.pyenv/versions/3.9.18/bin/python3")
    if not py39.exists():
        pytest.skip("no Python 3.9 on this machine")
    here = Path(__file__).resolve().parents[2] / "bridge" / "server"
    (tmp_path / "schema.py").write_text((here / "schema.py").read_text())  # alone, as on a server
    proc = subprocess.run([str(py39), "-I", "-S", "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
                           "import schema; print(json.dumps(schema.defaults()))", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == DeploySettings(DeployConfig()).as_json()


def test_hook_runs_under_python_39_when_available(server: Server, ws: Workspace) -> None:
    py39 = Path.home().parent / "nonexistent"
    for candidate in (Path("/root/.pyenv/versions/3.9.18/bin/python3"), Path("/usr/bin/python3.9")):
        if candidate.exists():
            py39 = candidate
    if not py39.exists():
        pytest.skip("no Python 3.9 on this machine")
    ws.write("a", "1\n")
    sha = ws.commit()
    ws.push("HEAD:main", "-o", "bridge.no-deploy")
    argv = hook_argv(str(server.root), "--deploy", sha, python=str(py39))
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (server.current / "a").read_text() == "1\n"


def test_hook_module_is_importable_from_the_package() -> None:
    from bridge.server import hook
    assert hook.deployable("refs/heads/x", None) and not hook.deployable("refs/tags/v1", None)
    assert hook.pushed_refs(iter(["a" * 40 + " " + "0" * 40 + " refs/heads/x\n"])) == []
    assert sys.modules["bridge.server.layout"]

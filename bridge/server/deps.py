"""A release's dependencies on the server: which manifest says what, and the cached environment it builds.

Runs on the server (stdlib, Python 3.9+; reading TOML needs 3.11's tomllib) beside hook.py. Each
environment lives under `.bridge/envs/<kind>-<hash of its manifest>` and is reused while the
manifest is unchanged, so a push that changes no dependency installs nothing. A manifest bridge
cannot install from is an error naming it and the fix, never a silently empty environment.

Python, first match wins: `deploy.python.install` (your command, in the venv), uv.lock (uv sync),
poetry.lock (its main-group pins), Pipfile.lock (its default pins), requirements.txt, then
pyproject.toml's PEP 621 `[project]` or `[tool.poetry]` dependencies; `deploy.python.extras`
adds optional dependencies. Node: `deploy.node.install` (your command), pnpm-lock.yaml, yarn.lock,
package-lock.json (npm ci), or npm install with a warning when there is no lockfile.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Protocol

    from .layout import Layout

    class Context(Protocol):
        """What an install needs from the running deploy (hook.Deploy)."""

        layout: Layout
        settings: dict

        def check(self, argv: list, cwd: Path, env: dict | None = None) -> None: ...

        def say(self, text: str) -> None: ...

try:  # installed on the server: layout.py sits beside this file
    from layout import ServerError, remove_tree
except ImportError:  # imported from the bridge package
    from .layout import ServerError, remove_tree

PYTHON_MANIFESTS = ("requirements.txt", "pyproject.toml", "uv.lock", "poetry.lock", "Pipfile.lock")
NODE_LOCKS = (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("package-lock.json", "npm"),
              ("npm-shrinkwrap.json", "npm"))
INSTALL_HINTS = {"uv": "pip install uv (docs.astral.sh/uv), or set deploy.python.install", "npm": "apt install npm",
                 "yarn": "npm install -g yarn (or corepack enable)", "pnpm": "npm install -g pnpm (or corepack enable)"}


class DepsError(ServerError):
    """The release's dependencies cannot be installed as declared; says why and what to do."""


class Env:
    """Which dependency environments a deploy built and which it reused."""

    def __init__(self) -> None:
        self.installed: list = []
        self.reused: list = []

    def status(self) -> str:
        if self.installed:
            return "installed"
        return "reused" if self.reused else "none"


class Plan:
    """How to fill one environment: a label for the report, the bytes its cache key hashes, the build."""

    def __init__(self, label: str, manifest: bytes, build: Callable[[Path], None]) -> None:
        self.label, self.manifest, self.build = label, manifest, build


def env_key(kind: str, *parts: bytes) -> str:
    """`<kind>-<hash>` of the manifest: same manifest, same environment, nothing to install."""
    import hashlib

    digest = hashlib.sha256(kind.encode())
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return "%s-%s" % (kind, digest.hexdigest()[:16])


def ensure_env(env_dir: Path, build: Callable[[Path], None]) -> bool:
    """Build env_dir once; True if it was built now. A dir without `.ready` is a failed build, redone."""
    if (env_dir / ".ready").is_file():
        return False
    remove_tree(env_dir)
    env_dir.mkdir(parents=True)
    try:
        build(env_dir)
    except BaseException:
        remove_tree(env_dir)
        raise
    (env_dir / ".ready").write_text(str(time.time()))
    return True


def require_tool(name: str, manifest: str) -> str:
    """The tool's path, or DepsError saying the manifest needs it and how to get it."""
    import shutil  # here: most pushes install nothing, and the hook's start-up is on every push

    path = shutil.which(name)
    if path is None:
        raise DepsError("%s found but %s is not installed on the server: %s" % (manifest, name, INSTALL_HINTS[name]))
    return path


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:
        raise DepsError("%s needs Python 3.11+ on the server to read; add a requirements.txt" % path.name)
    with open(str(path), "rb") as fh:
        try:
            return tomllib.load(fh)
        except ValueError as e:
            raise DepsError("%s is not valid TOML: %s" % (path.name, e))


# ---------------------------------------------------------------- python


def has_python_manifest(release: Path, settings: dict) -> bool:
    return bool((settings.get("python") or {}).get("install")) or any(
        (release / name).is_file() for name in PYTHON_MANIFESTS)


def install_python(ctx: Context, release: Path, env: Env) -> str:
    """Build (or reuse) the release's venv and link it as `.venv`; returns what it did."""
    extras = list((ctx.settings.get("python") or {}).get("extras") or [])
    plan = python_plan(ctx, release, extras)
    key = env_key("py", plan.manifest, json.dumps(extras).encode(), sys.version.encode())
    env_dir = ctx.layout.envs / key

    def build(path: Path) -> None:
        ctx.check([sys.executable, "-m", "venv", str(path)], release)
        plan.build(path)

    (env.installed if ensure_env(env_dir, build) else env.reused).append(key)
    os.symlink(str(env_dir), str(release / ".venv"))
    return "python deps from %s" % plan.label


def python_plan(ctx: Context, release: Path, extras: list) -> Plan:
    """The first manifest that declares the release's Python dependencies (module docstring's order)."""
    command = (ctx.settings.get("python") or {}).get("install")
    if command:
        return command_plan(ctx, release, command)
    if (release / "uv.lock").is_file():
        return uv_plan(ctx, release, extras)
    for name, pins in (("poetry.lock", poetry_lock_pins), ("Pipfile.lock", pipfile_lock_pins)):
        if (release / name).is_file():
            return pip_plan(ctx, release, name, (release / name).read_bytes(), pins(release, extras))
    requirements = release / "requirements.txt"
    if requirements.is_file():
        optional = pyproject_extras(release, extras) if extras else []
        return pip_plan(ctx, release, "requirements.txt", requirements.read_bytes() + json.dumps(optional).encode(),
                        ["-r", str(requirements), *optional])
    deps = pyproject_requirements(release, extras)
    return pip_plan(ctx, release, "pyproject.toml", json.dumps(deps).encode(), deps)


def pip_plan(ctx: Context, release: Path, label: str, manifest: bytes, args: list) -> Plan:
    def build(venv: Path) -> None:
        if not args:
            ctx.say("%s declares no dependencies" % label)
            return
        ctx.check([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                   "--no-input", *args], release)

    return Plan(label, manifest, build)


def command_plan(ctx: Context, release: Path, command: str) -> Plan:
    """deploy.python.install: the user's command, run in the release with the venv first on PATH."""
    manifest = command.encode() + b"".join((release / n).read_bytes() for n in PYTHON_MANIFESTS
                                           if (release / n).is_file())

    def build(venv: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(VIRTUAL_ENV=str(venv), PATH=str(venv / "bin") + os.pathsep + env.get("PATH", os.defpath))
        ctx.check(["sh", "-c", command], release, env)

    return Plan("deploy.python.install", manifest, build)


def uv_plan(ctx: Context, release: Path, extras: list) -> Plan:
    uv = require_tool("uv", "uv.lock")
    manifest = (release / "uv.lock").read_bytes() + (release / "pyproject.toml").read_bytes()

    def build(venv: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON=sys.executable)
        flags = [arg for extra in extras for arg in ("--extra", extra)]
        ctx.check([uv, "sync", "--frozen", "--no-install-project", *flags], release, env)

    return Plan("uv.lock (uv sync)", manifest, build)


def poetry_lock_pins(release: Path, extras: list) -> list:
    """`name==version` for poetry.lock's main-group packages (optional ones only for the extras asked)."""
    lock = read_toml(release / "poetry.lock")
    wanted = set()
    if extras:
        declared = (read_toml(release / "pyproject.toml").get("tool", {}).get("poetry", {}).get("extras", {})
                    if (release / "pyproject.toml").is_file() else {})
        missing = [e for e in extras if e not in declared]
        if missing:
            raise DepsError("deploy.python.extras names %s, which [tool.poetry.extras] does not declare"
                            % ", ".join(missing))
        wanted = {normal_name(p) for e in extras for p in declared[e]}
    pins = []
    for package in lock.get("package", []):
        groups = package.get("groups") or [package.get("category", "main")]
        if "main" in groups and (not package.get("optional") or normal_name(package["name"]) in wanted):
            pins.append("%s==%s" % (package["name"], package["version"]))
    return pins


def pipfile_lock_pins(release: Path, extras: list) -> list:
    """The `default` section of Pipfile.lock as pip requirements (versions and markers kept)."""
    try:
        lock = json.loads((release / "Pipfile.lock").read_text())
    except ValueError as e:
        raise DepsError("Pipfile.lock is not valid JSON: %s" % e)
    pins = []
    for name, entry in sorted((lock.get("default") or {}).items()):
        if "version" not in entry:
            raise DepsError("Pipfile.lock pins %s to %s, not a version: add a requirements.txt or set "
                            "deploy.python.install" % (name, ", ".join(sorted(k for k in entry if k != "hashes"))))
        pins.append(name + entry["version"] + ("; " + entry["markers"] if entry.get("markers") else ""))
    return pins


def pyproject_requirements(release: Path, extras: list) -> list:
    """PEP 621 `[project]` dependencies (+ extras), else `[tool.poetry]`'s, translated to PEP 508."""
    data = read_toml(release / "pyproject.toml")
    project = data.get("project")
    if project is not None:
        if "dependencies" in project.get("dynamic", []):
            raise DepsError("pyproject.toml declares its dependencies `dynamic`, which bridge cannot read: "
                            "add a requirements.txt or set deploy.python.install")
        return list(project.get("dependencies", [])) + pyproject_extras(release, extras)
    poetry = data.get("tool", {}).get("poetry")
    if poetry is not None:
        return poetry_requirements(poetry, extras)
    if extras:
        raise DepsError("deploy.python.extras is set but pyproject.toml declares no optional dependencies")
    return []


def pyproject_extras(release: Path, extras: list) -> list:
    """`[project.optional-dependencies]` of the extras asked for; DepsError for an extra not declared."""
    path = release / "pyproject.toml"
    declared = read_toml(path).get("project", {}).get("optional-dependencies", {}) if path.is_file() else {}
    missing = [e for e in extras if e not in declared]
    if missing:
        raise DepsError("deploy.python.extras names %s, which [project.optional-dependencies] does not declare"
                        % ", ".join(missing))
    return [req for extra in extras for req in declared[extra]]


def poetry_requirements(poetry: dict, extras: list) -> list:
    """`[tool.poetry.dependencies]` as PEP 508 lines (^ and ~ constraints translated), python left out."""
    wanted = {normal_name(p) for e in extras for p in poetry.get("extras", {}).get(e, [])}
    missing = [e for e in extras if e not in poetry.get("extras", {})]
    if missing:
        raise DepsError("deploy.python.extras names %s, which [tool.poetry.extras] does not declare"
                        % ", ".join(missing))
    requirements = []
    for name, spec in poetry.get("dependencies", {}).items():
        if name.lower() == "python":
            continue
        spec = {"version": spec} if isinstance(spec, str) else spec
        if "version" not in spec:
            raise DepsError("[tool.poetry.dependencies] %s is not a version constraint (%s): install it with "
                            "deploy.python.install" % (name, ", ".join(sorted(spec))))
        if spec.get("optional") and normal_name(name) not in wanted:
            continue
        requirements.append(name + ("[%s]" % ",".join(spec["extras"]) if spec.get("extras") else "")
                            + poetry_constraint(spec["version"]))
    return requirements


def poetry_constraint(text: str) -> str:
    """Poetry's `^1.2`, `~1.2.3`, `1.2.3`, `*` and comma lists as a PEP 440 specifier."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return ",".join(filter(None, (poetry_part(p) for p in parts)))


def poetry_part(part: str) -> str:
    if part == "*":
        return ""
    if part[0] in "^~" and not part.startswith("~="):
        numbers = [int(n) for n in re.findall(r"\d+", part[1:])] or [0]
        if part[0] == "^":
            first = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1)
        else:
            first = min(1, len(numbers) - 1) if len(numbers) > 1 else 0
        upper = numbers[:first] + [numbers[first] + 1]
        return ">=%s,<%s" % (part[1:], ".".join(map(str, upper)))
    return part if part[0] in "<>=!~" else "==" + part


def normal_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- node


NODE_FILES = ("package.json", *(name for name, _ in NODE_LOCKS), ".npmrc", ".yarnrc", ".yarnrc.yml")


def has_node_manifest(release: Path, settings: dict) -> bool:
    return bool((settings.get("node") or {}).get("install")) or (release / "package.json").is_file()


def install_node(ctx: Context, release: Path, env: Env) -> str:
    """node_modules from the lockfile's own tool (or deploy.node.install), in a cached environment
    holding copies of package.json, the lockfiles and .npmrc, linked into the release."""
    command = (ctx.settings.get("node") or {}).get("install")
    lock, tool = next(((name, tool) for name, tool in NODE_LOCKS if (release / name).is_file()), (None, "npm"))
    found = [name for name in NODE_FILES if (release / name).is_file()]
    manifest = (command or "").encode() + b"".join((release / name).read_bytes() for name in found)
    if command:
        argv, label = ["sh", "-c", command], "deploy.node.install"
    else:
        argv = [require_tool(tool, lock or "package.json"), *node_install_args(tool, lock)]
        label = " ".join([tool, *node_install_args(tool, lock)])
        if lock is None:
            ctx.say("warning: package.json has no lockfile; `npm install` resolves versions afresh "
                    "(commit package-lock.json for repeatable deploys)")
    env_dir = ctx.layout.envs / env_key("node", manifest)

    def build(where: Path) -> None:
        import shutil

        for name in found:
            shutil.copy2(str(release / name), str(where / name))
        ctx.check(argv, where)
        if not (where / "node_modules").is_dir():
            raise DepsError("%s made no node_modules in the folder it ran in; it must install there "
                            "(it holds copies of package.json and the lockfiles)" % label)

    (env.installed if ensure_env(env_dir, build) else env.reused).append(env_dir.name)
    os.symlink(str(env_dir / "node_modules"), str(release / "node_modules"))
    return "node deps: " + label


def node_install_args(tool: str, lock: str | None) -> list:
    if tool == "pnpm":
        return ["install", "--frozen-lockfile"]
    if tool == "yarn":
        return ["install", "--frozen-lockfile", "--non-interactive"]
    return ["ci" if lock else "install", "--no-audit", "--no-fund"]

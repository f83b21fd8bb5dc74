"""Every dependency kind on a real project layout, installed on the real server (pip from PyPI, npm from
its registry, through this machine's CA bundle), each cached by its manifest's hash."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.apps.conftest import deploy_root
from tests.conftest import Result, write_config
from tests.sync.test_push import commit, git
from tests.systemd_server import SystemdServer

LAYOUTS = {path.name: path.read_text() for path in (Path(__file__).parent / "layouts").iterdir()}
LOCK = LAYOUTS["package-lock.json"]
PACKAGE = json.dumps({"name": "t", "version": "1.0.0", "dependencies": {"left-pad": "1.3.0"}})
PYPROJECT = '[project]\nname = "t"\nversion = "1"\nrequires-python = ">=3.9"\ndependencies = ["six==1.16.0"]\n'
LEFT_PAD_APP = "console.log(require('left-pad')('x', 3, '.'))\n"
VERSION_OF = "import importlib.metadata as m, sys; print(' '.join(m.version(n) for n in sys.argv[1:]))"


@pytest.fixture
def login() -> str:
    """Dependencies do not depend on the account: root only, to keep the PyPI traffic down."""
    return "root"


class Project:
    def __init__(self, bridge: Callable[..., Result], folder: Path, server: SystemdServer, name: str) -> None:
        self.bridge, self.folder, self.server, self.name = bridge, folder, server, name

    def setup(self, files: dict[str, str], deploy: str = "") -> None:
        git(self.folder, "init", "-q", "-b", "main")
        url = self.server.url("root", deploy_root("root", self.name))
        write_config(self.folder, f"workspace: {self.name}\ndefault: prod\nremotes:\n  prod: {url}\n"
                                  f"deploy:\n  keep_releases: 2\n{deploy}")
        commit(self.folder, files, "first")
        assert self.bridge("init", cwd=self.folder).code == 0

    def push(self) -> Result:
        return self.bridge("push", cwd=self.folder, timeout=300)

    def versions(self, *names: str) -> str:
        result = self.bridge("exec", "--", "python", "-c", VERSION_OF, *names, cwd=self.folder)
        assert result.code == 0, result
        return result.out.strip()


@contextlib.contextmanager
def tool_hidden(server: SystemdServer, tool: str | None) -> Iterator[None]:
    """The server without `tool` on PATH for a moment (its link renamed; the session's container is ours)."""
    if tool:
        server.sh('mv "/usr/local/bin/$1" "/usr/local/bin/$1.hidden"', tool)
    try:
        yield
    finally:
        if tool:
            server.sh('mv "/usr/local/bin/$1.hidden" "/usr/local/bin/$1"', tool)


@pytest.fixture
def project(bridge, workspace: Path, server: SystemdServer, app_name: str) -> Project:
    return Project(bridge, workspace, server, app_name)


def test_pep621_with_extras_installs_then_reuses(project: Project) -> None:
    project.setup({"pyproject.toml": '[project]\nname = "t"\nversion = "1"\ndependencies = ["six==1.16.0"]\n'
                                     '[project.optional-dependencies]\ntest = ["idna==3.7"]\n'},
                  "  python: {extras: [test]}\n")
    first = project.push()
    assert first.code == 0 and "deps installed" in first.out, first
    assert project.versions("six", "idna") == "1.16.0 3.7"
    commit(project.folder, {"app.py": "print(1)\n"})
    second = project.push()
    assert second.code == 0 and "deps reused" in second.out, second


def test_poetry_pyproject_without_lock_is_installed_not_ignored(project: Project) -> None:
    project.setup({"pyproject.toml": '[tool.poetry]\nname = "t"\nversion = "1"\n'
                                     '[tool.poetry.dependencies]\npython = "^3.9"\nsix = "~1.16.0"\n'
                                     'idna = {version = "^3.7", optional = true}\n'})
    assert project.push().code == 0
    assert project.versions("six") == "1.16.0"
    optional = project.bridge("exec", "--", "python", "-c", "import importlib.util as u; print(u.find_spec('idna'))",
                              cwd=project.folder)
    assert optional.out.strip() == "None"


def test_poetry_lock_installs_its_main_pins(project: Project) -> None:
    lock = ('[[package]]\nname = "six"\nversion = "1.16.0"\noptional = false\ngroups = ["main"]\n\n'
            '[[package]]\nname = "idna"\nversion = "3.7"\noptional = false\ngroups = ["dev"]\n')
    project.setup({"pyproject.toml": '[tool.poetry]\nname = "t"\nversion = "1"\n[tool.poetry.dependencies]\n'
                                     'python = "^3.9"\nsix = "*"\n', "poetry.lock": lock})
    result = project.push()
    assert result.code == 0 and "poetry.lock" in result.out, result
    assert project.versions("six") == "1.16.0"


def test_pipfile_lock_installs_its_default_pins(project: Project) -> None:
    lock = {"_meta": {}, "default": {"six": {"version": "==1.16.0", "hashes": []}},
            "develop": {"idna": {"version": "==3.7"}}}
    project.setup({"Pipfile": "[packages]\nsix = '*'\n", "Pipfile.lock": json.dumps(lock)})
    assert project.push().code == 0
    assert project.versions("six") == "1.16.0"


def test_an_install_command_replaces_bridges_own(project: Project) -> None:
    project.setup({"requirements/prod.txt": "six==1.16.0\n"},
                  '  python: {install: "pip install -r requirements/prod.txt"}\n')
    result = project.push()
    assert result.code == 0 and "deploy.python.install" in result.out, result
    assert project.versions("six") == "1.16.0"


@pytest.mark.parametrize("files, hidden, message", [
    ({"uv.lock": LAYOUTS["uv.lock"], "pyproject.toml": PYPROJECT}, "uv",
     "uv.lock found but uv is not installed on the server"),
    ({"pyproject.toml": '[project]\nname = "t"\nversion = "1"\ndynamic = ["dependencies"]\n'}, None,
     "declares its dependencies `dynamic`"),
    ({"package.json": PACKAGE, "yarn.lock": LAYOUTS["yarn.lock"]}, "yarn", "yarn.lock found but yarn is not installed"),
    ({"package.json": PACKAGE, "pnpm-lock.yaml": LAYOUTS["pnpm-lock.yaml"]}, "pnpm",
     "pnpm-lock.yaml found but pnpm is not installed"),
])
def test_what_cannot_be_installed_is_a_clear_error(project: Project, files: dict, hidden: str | None,
                                                   message: str) -> None:
    """The server image has uv, yarn and pnpm: each is hidden (renamed) for the push that needs it."""
    project.setup(files)
    with tool_hidden(project.server, hidden):
        result = project.push()
    assert result.code == 1, result
    assert message in result.out + result.err
    assert "current` is unchanged" in result.out + result.err


def test_npm_ci_with_a_lockfile_and_install_with_a_warning_without(project: Project) -> None:
    project.setup({"package.json": PACKAGE, "package-lock.json": LOCK,
                   "app.js": "console.log(require('left-pad')('x', 3, '.'))\n"})
    first = project.push()
    assert first.code == 0 and "npm ci" in first.out, first
    ran = project.bridge("exec", "--", "node", "app.js", cwd=project.folder)
    assert ran.out.strip() == "..x"
    (project.folder / "package-lock.json").unlink()
    commit(project.folder, {"package.json": PACKAGE.replace('"1.0.0"', '"1.0.1"')})
    second = project.push()
    assert second.code == 0 and "no lockfile" in second.out and "npm install" in second.out, second
    assert project.bridge("exec", "--", "node", "app.js", cwd=project.folder).out.strip() == "..x"


def test_uv_lock_is_installed_with_uv_sync(project: Project) -> None:
    project.setup({"pyproject.toml": PYPROJECT, "uv.lock": LAYOUTS["uv.lock"]})
    result = project.push()
    assert result.code == 0 and "uv.lock (uv sync)" in result.out, result
    assert project.versions("six") == "1.16.0"


@pytest.mark.parametrize("lock, tool", [("yarn.lock", "yarn install"), ("pnpm-lock.yaml", "pnpm install")])
def test_yarn_and_pnpm_lockfiles_install_with_their_tool(project: Project, lock: str, tool: str) -> None:
    project.setup({"package.json": PACKAGE, lock: LAYOUTS[lock], "app.js": LEFT_PAD_APP})
    result = project.push()
    assert result.code == 0 and f"node deps: {tool} --frozen-lockfile" in result.out, result
    ran = project.bridge("exec", "--", "node", "app.js", cwd=project.folder)
    assert ran.code == 0 and ran.out.strip() == "..x", ran


def test_a_node_install_command_replaces_bridges_own(project: Project) -> None:
    project.setup({"package.json": PACKAGE, "package-lock.json": LOCK, "app.js": LEFT_PAD_APP},
                  '  node: {install: "npm ci --omit=dev --no-audit --no-fund"}\n')
    result = project.push()
    assert result.code == 0 and "node deps: deploy.node.install" in result.out, result
    assert project.bridge("exec", "--", "node", "app.js", cwd=project.folder).out.strip() == "..x"
    commit(project.folder, {"app.js": LEFT_PAD_APP + "// unchanged deps\n"})
    again = project.push()
    assert again.code == 0 and "deps reused" in again.out, again


def test_a_node_install_command_that_makes_no_node_modules_fails_the_deploy(project: Project) -> None:
    project.setup({"package.json": PACKAGE}, '  node: {install: "true"}\n')
    result = project.push()
    assert result.code == 1, result
    assert "deploy.node.install made no node_modules" in result.out + result.err
    assert "current` is unchanged" in result.out + result.err


@pytest.mark.parametrize("poetry, pep440", [
    ("^1.2.3", ">=1.2.3,<2"), ("^0.2.3", ">=0.2.3,<0.3"), ("^0.0.3", ">=0.0.3,<0.0.4"), ("~1.2.3", ">=1.2.3,<1.3"),
    ("~1", ">=1,<2"), ("*", ""), ("1.2.3", "==1.2.3"), (">=1.0,<3", ">=1.0,<3"), ("~=2.1", "~=2.1"),
])
def test_poetry_constraints_become_pep440(poetry: str, pep440: str) -> None:
    from bridge.server.deps import poetry_constraint

    assert poetry_constraint(poetry) == pep440

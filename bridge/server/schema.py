"""The one schema of a deploy's settings: bridge.yaml's `deploy:` section as the client parses it
(config.py builds these dataclasses) and as the server reads it back from `<root>/.bridge/deploy.json`.

Stdlib only, Python 3.9+: copied to the server beside hook.py. prepare writes deploy.json whole
from DeploySettings.as_json(), together with the hook, so the hook imports this module only for a
root without one (dataclasses pulls in inspect: ~20 ms a push that the usual deploy does not pay).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PythonDeps:
    """How a deploy installs Python dependencies (`deploy.python`)."""

    extras: tuple[str, ...] = ()  # optional-dependency groups to install too
    install: str | None = None  # a command that replaces bridge's own install, run in the venv


@dataclass(frozen=True)
class NodeDeps:
    """How a deploy installs Node dependencies (`deploy.node`)."""

    install: str | None = None  # a command that replaces bridge's own install, run where node_modules is built


@dataclass(frozen=True)
class DeployConfig:
    """What the server does with each push (DESIGN §5): bridge.yaml's `deploy:` section."""

    install: str = "auto"
    commands: tuple[str, ...] = ()
    healthcheck: str | None = None  # a command, or an HTTP path ("/health") on web_port once processes run
    healthcheck_timeout: float = 30
    keep_releases: int = 5
    branch: str | None = None
    processes: dict[str, str] = field(default_factory=dict)  # overrides the workspace's Procfile
    web_port: int = 8000
    front: str = "auto"  # web behind an nginx front for zero-downtime switches: auto (if installed), nginx, none
    shared: tuple[str, ...] = ()  # paths kept under <root>/shared/ and linked into every release
    timeout: float = 1800  # seconds for the whole deploy, 0 = none
    step_timeout: float = 600  # seconds for one step (an install, a command), 0 = none
    python: PythonDeps = field(default_factory=PythonDeps)
    node: NodeDeps = field(default_factory=NodeDeps)


@dataclass(frozen=True)
class DeploySettings:
    """What the hook reads from `<root>/.bridge/deploy.json`: bridge.yaml's `deploy:` section and the
    workspace's name, which names the app's systemd units."""

    deploy: DeployConfig = field(default_factory=DeployConfig)
    workspace: str = ""

    def as_json(self) -> dict:
        data = dataclasses.asdict(self.deploy)
        data["workspace"] = self.workspace
        return json.loads(json.dumps(data))  # tuples as JSON lists, as the hook will read them


def defaults() -> dict:
    """deploy.json as a workspace with no `deploy:` section would write it."""
    return DeploySettings().as_json()

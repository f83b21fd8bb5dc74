"""`bridge init`, `bridge remote add/list/remove`, `bridge test`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bridge import ui
from bridge.exec.options import FORKS


def register(app: typer.Typer) -> None:
    """Add the workspace commands to the app."""
    app.command(epilog="Example: bridge init --remote prod ssh://deploy@example.com/srv/app")(init)
    remote_app = typer.Typer(help="Manage remotes in bridge.yaml.", no_args_is_help=True)
    remote_app.command("add", epilog="Example: bridge remote add prod ssh://deploy@host:22/srv/app")(remote_add)
    remote_app.command("default", epilog="Example: bridge remote default prod")(remote_default)
    remote_app.command("list", epilog="Example: bridge remote list --json")(remote_list)
    remote_app.command("remove", epilog="Example: bridge remote remove staging")(remote_remove)
    app.add_typer(remote_app, name="remote")
    app.command("test", epilog="Example: bridge test prod --trust")(test)


def init(
    name: Annotated[Optional[str], typer.Option("--name", help="Workspace name (default: folder name).")] = None,
    remote: Annotated[Optional[tuple[str, str]], typer.Option(
        "--remote", help="A remote to add: NAME URL.", metavar="NAME URL")] = None,
) -> int:
    """Make this folder a bridge workspace (git repo + bridge.yaml) and prepare its remotes. Idempotent."""
    from bridge import config as cfg
    from bridge import workspace

    report = workspace.init(Path.cwd(), name, [remote] if remote else [])
    if report.created_repo:
        ui.say(f"initialised git repo in {report.root}")
    ui.say(f"{'wrote' if report.created_config else 'kept'} {report.root / cfg.CONFIG_NAME}")
    for added in report.added:
        ui.say(f"added remote {added}")
    from bridge.sync import service as sync

    failed = 0
    for remote_name, error in sync.prepare_remotes(cfg.load(start=report.root, required=True)):
        ui.say(f"prepared remote {remote_name}" if error is None else f"could not prepare {remote_name}: {error}",
               err=error is not None)
        failed += error is not None
    return 1 if failed else 0


def _workspace_file() -> Path:
    """This workspace's bridge.yaml, loaded first so a bad file is refused (file:line:key) before an edit."""
    from bridge import config as cfg

    path = cfg.load(required=True).path
    assert path is not None  # required=True raises when there is no bridge.yaml
    return path


def remote_add(
    name: Annotated[str, typer.Argument(help="Name of the remote.")],
    url: Annotated[str, typer.Argument(help="ssh://user@host:port/path, user@host:/path, alias, local:///path")],
    identity: Annotated[Optional[str], typer.Option(help="Private key file for this remote.")] = None,
    via: Annotated[Optional[str], typer.Option(help="Reach it through this remote (jump host / relay).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="`git` for a plain git remote (push only).")] = None,
    default: Annotated[bool, typer.Option("--default", help="Make it the target of commands that name none.")] = False,
) -> int:
    """Add a remote to bridge.yaml (comments and layout are kept)."""
    from bridge import workspace

    displaced = workspace.add_remote(_workspace_file(), name, url, identity=identity, via=via, kind=kind, default=default)
    ui.say(f"added remote {name} -> {url}" + (" (the default)" if default else ""))
    if displaced:
        ui.say(f"note: commands without a target ran on `{displaced}`; now they ask which remote. "
               f"Choose: bridge remote default {name}  (or: bridge remote default {displaced})", err=True)
    return 0


def remote_default(name: Annotated[str, typer.Argument(help="Remote or group.")]) -> int:
    """Make a remote (or group) the target of commands that name none: `default:` in bridge.yaml."""
    from bridge import workspace

    workspace.set_default(_workspace_file(), name)
    ui.say(f"default target: {name}")
    return 0


def remote_list(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> int:
    """List the remotes and groups of this workspace."""
    from bridge import config as cfg

    config = cfg.load(required=True)
    rows = [{"name": r.name, "url": r.url, "kind": r.kind, "via": r.via,
             "default": r.name == config.default} for r in config.remotes.values()]
    if json:
        ui.print_json({"remotes": rows, "groups": {g: list(m) for g, m in config.groups.items()}})
        return 0
    ui.table(None, ["name", "url", "kind", "via"], [[r.name + (" *" if r.name == config.default else ""), r.url,
                                                    r.kind, r.via or ""] for r in config.remotes.values()])
    for group, members in config.groups.items():
        ui.say(f"group {group}: {', '.join(members)}")
    return 0


def remote_remove(name: Annotated[str, typer.Argument(help="Name of the remote.")]) -> int:
    """Remove a remote from bridge.yaml (nothing on the server is touched)."""
    from bridge import workspace

    workspace.remove_remote(_workspace_file(), name)
    ui.say(f"removed remote {name}")
    return 0


def test(
    target: Annotated[Optional[str], typer.Argument(help="Remote, group, a,b list or `all` (default: all).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    trust: Annotated[bool, typer.Option("--trust", help="Add an UNKNOWN host key to known_hosts (never a changed one).")] = False,
    forks: Annotated[Optional[int], typer.Option(help=FORKS.help)] = None,
) -> int:
    """Check each remote: reachable, host key, auth, git, python3, disk, docker, latency. Exit 0 only if all pass."""
    from bridge import config as cfg
    from bridge import doctor, limits, targets

    limits.check_option("--forks", "exec.forks", forks)
    config = cfg.load(required=True)
    reports = doctor.check_remotes(config, targets.resolve(config, target or "all"), trust=trust, forks=forks)
    if json:
        ui.print_json([r.to_dict() for r in reports])
    else:
        _render_reports(reports)
    return doctor.exit_code(reports)


def _render_reports(reports: list) -> None:
    for report in reports:
        if report.trusted:
            ui.say(f"trusted host key of {report.remote}: {report.trusted}")
        ui.table(f"{report.remote}  {report.url}", ["check", "result", "detail"],
                 [[c.name, ui.mark(c.ok), c.detail] for c in report.checks])

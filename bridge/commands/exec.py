"""`bridge exec` and `bridge shell`: parse, call bridge.exec.command, return its exit code."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from bridge.commands import FORKS_HELP

COMMAND_KEY = "bridge_command"


class SplitAtDashes(TyperCommand):
    """Keep everything after `--` apart, so a target before it is never confused with the command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[COMMAND_KEY] = tuple(args[cut + 1:])
            args = args[:cut]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    """Add `exec` and `shell` to the app."""
    app.command("exec", cls=SplitAtDashes, epilog="Examples: bridge exec prod -- uname -a;  "
                "bridge exec --on web --json -- systemctl is-active app;  bridge exec --python job.py")(exec_)
    app.command("shell", epilog="Example: bridge shell prod")(shell)


def exec_(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(help="Remote, group, a,b list or `all` (default: the default remote).")] = None,
    on: Annotated[Optional[str], typer.Option("--on", help="Same as TARGET.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds; ends the whole remote process tree, exit 124.")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", help="K=V for the command (repeatable).")] = None,
    cwd: Annotated[Optional[str], typer.Option(help="Directory on the server (default: deployed current, else home).")] = None,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a PTY (window size and Ctrl-C forwarded).")] = False,
    sudo: Annotated[bool, typer.Option("--sudo", help="Run through sudo; the password is asked once (or BRIDGE_SUDO_PASSWORD).")] = False,
    python: Annotated[Optional[str], typer.Option("--python", help="Run this Python file (`-`: stdin) on the target.")] = None,
    forks: Annotated[Optional[int], typer.Option(help=FORKS_HELP)] = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per host per line.")] = False,
    no_reuse: Annotated[bool, typer.Option("--no-reuse", help="Do not use or start the connection keeper.")] = False,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Run inside a locked-down Docker container on the target.")] = False,
) -> int:
    """Run a command (after `--`) or Python code on one target or a fleet; exits with the command's code."""
    from bridge.exec.command import ExecOptions, execute
    from bridge.exec.remote import parse_env

    command: tuple[str, ...] = ctx.meta.get(COMMAND_KEY, ())
    if on and target:
        command, target = (target, *command), on
    variables = parse_env(env or [])
    options = ExecOptions(command=command, target=on or target, env=variables, cwd=cwd, timeout=timeout,
                          tty=tty, sudo=sudo, python=python, forks=forks, json=json, sandbox=sandbox)
    if not tty:
        return execute(options)
    with _recording(on or target, " ".join(command), variables) as record:
        return execute(options._replace(record=record))


def shell(target: Annotated[Optional[str], typer.Argument(help="Remote (default: the default remote).")] = None) -> Any:
    """Open an interactive login shell on the target, with a PTY (recorded as asciicast v2)."""
    from bridge.exec.interactive import shell as open_shell

    with _recording(target, "shell", {}) as record:
        return open_shell(target, record)


@contextlib.contextmanager
def _recording(target: str | None, command: str, env: dict[str, str]) -> Iterator[Callable[[bytes], None]]:
    """A session recording under $XDG_STATE_HOME/bridge/recordings, secrets from --env masked (DESIGN §7)."""
    import getpass

    from bridge.exec.interactive import terminal_size
    from bridge.security.recording import Recorder, new_recording_path, recordings_dir
    from bridge.security.secrets import secret_values

    width, height = terminal_size()
    path = new_recording_path(recordings_dir(), getpass.getuser())
    with Recorder(path, width=width, height=height, title=f"bridge {target or 'default'}", command=command,
                  secrets=secret_values(env)) as recorder:
        yield recorder.output

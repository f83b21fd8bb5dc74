"""`bridge exec` and `bridge shell`: parse, call bridge.exec.command, return its exit code."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from bridge.commands.model import typer_function

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
    """Add `exec` and `shell` to the app; exec's parameters come from its command model (bridge.exec.options)."""
    from bridge.exec.options import EXEC

    app.command("exec", cls=SplitAtDashes, epilog="Examples: bridge exec prod -- uname -a;  "
                "bridge exec --on web --json -- systemctl is-active app;  bridge exec --python job.py")(
        typer_function(EXEC, exec_, context=True))
    app.command("shell", epilog="Example: bridge shell prod")(shell)


def exec_(ctx: typer.Context, fields: dict) -> int:
    """Run a command (after `--`) or Python code on one target or a fleet; exits with the command's code."""
    from bridge.exec.command import execute
    from bridge.exec.options import options_from

    options = options_from(fields, ctx.meta.get(COMMAND_KEY, ()))
    if not options.tty:
        return execute(options)
    with _recording(options.target, " ".join(options.command), options.env) as record:
        return execute(options.replace(record=record))


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

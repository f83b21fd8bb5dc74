"""The client's audit line for one `bridge` operation: what was run, how it ended, secrets masked.

Called by `bridge.cli.main` after a command, and by the connection keeper for the warm
`bridge exec` runs it serves (so the warm client never imports the audit writer).
"""
from __future__ import annotations

# Commands that change or run something; reads, and the server-side guard (which audits itself), are not.
AUDITED = {"init", "remote", "push", "pull", "rollback", "exec", "shell", "tunnel", "keys",
           "restart", "stop", "start", "config", "deploy"}
READ_ONLY_SUBCOMMANDS = {"list", "status", "show"}
POLICY_REFUSED = 126


def is_audited(args: list[str]) -> bool:
    """True for an operation worth a line: not --help, not a read-only subcommand, not a server-side hook."""
    options = bridge_options(args)
    if not options or options[0] not in AUDITED or {"--help", "-h"} & set(options):
        return False
    if options[:2] == ["keys", "pam-session"]:  # sshd's PAM hook: it writes the server's line itself
        return False
    return not (len(options) > 1 and options[1] in READ_ONLY_SUBCOMMANDS)


def record_operation(args: list[str], code: int, duration: float, cwd: str, env: dict[str, str]) -> None:
    """Append the operation's line to the client audit log, the values of `env` (the command's --env, as
    its parser read them) masked as secrets where they look like them (never raises)."""
    import shlex  # here, not at the top: `is_audited` runs for every command, --help included

    from bridge.security import audit, secrets

    audit.record(action=args[0], command=shlex.join(config_values_masked(args)), exit_code=code, duration=round(duration, 4),
                 decision="refused" if code == POLICY_REFUSED else "allowed",
                 secrets=tuple(secrets.secret_values(env)), cwd=cwd)


def config_values_masked(args: list[str]) -> list[str]:
    """`config set KEY=VALUE…` with every VALUE masked: app config never reaches the audit log in clear."""
    if args[:2] != ["config", "set"]:
        return args
    from bridge.security.secrets import MASK

    return [a.split("=", 1)[0] + "=" + MASK if "=" in a and not a.startswith("-") else a for a in args]


def bridge_options(args: list[str]) -> list[str]:
    """The arguments bridge itself parses: those before `--`."""
    return args[:args.index("--")] if "--" in args else args

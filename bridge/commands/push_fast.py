"""The fast path of `bridge push`: its flags parsed by hand, so a push never loads typer and click (~100 ms).

It accepts what the Typer command does for the everyday forms (`[TARGET] [--on T] [--wip]
[--no-deploy] [--force] [--redeploy]`) and returns None, before any output, for anything else (`--help`, an
unknown or malformed option, a second TARGET, `--`): main() then lets Typer parse and report it.
"""
from __future__ import annotations

FLAGS = {"--wip": "wip", "--no-deploy": "no_deploy", "--force": "force", "--redeploy": "redeploy",
         "-v": "verbose", "--verbose": "verbose"}


def try_push(args: list[str]) -> int | None:
    """Run `bridge push ARGS` without Typer and return its exit code; None leaves ARGS to Typer."""
    found = parse(args)
    if found is None:
        return None
    from bridge.commands.push import push

    return push(found["on"] or found["target"], wip=found["wip"], deploy=not found["no_deploy"], force=found["force"],
                redeploy=found["redeploy"], verbose=found["verbose"])


def parse(args: list[str]) -> dict | None:
    """TARGET, --on, and the flags as the Typer command would read them; None for anything else."""
    found: dict = {"target": None, "on": None, "wip": False, "no_deploy": False, "force": False, "redeploy": False,
                   "verbose": False}
    words = iter(args)
    for word in words:
        if word in FLAGS:
            found[FLAGS[word]] = True
        elif word == "--on" or word.startswith("--on="):
            value = word[len("--on="):] if "=" in word else next(words, None)
            if value is None or value.startswith("-"):
                return None
            found["on"] = value
        elif word.startswith("-") or found["target"] is not None:
            return None  # --help, -h, --, an unknown option, a second TARGET: Typer's to parse or refuse
        else:
            found["target"] = word
    return found

"""Typer commands generated from a command model (bridge.options.Command): one parameter per declared
flag, with its names, type and help, so the Typer command and the hand parsers cannot drift apart."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from bridge.errors import UsageError
from bridge.options import Command, Flag, env_pair


def typer_function(command: Command, body: Callable[..., int], *, context: bool = False) -> Callable[..., int]:
    """A function whose signature Typer reads as `command`'s: TARGET, then every flag; it calls
    `body(fields)` (plus the click context first, with `context`), the fields as `Command.parse` gives them."""
    name, help_text = command.argument
    parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    parameters = parameters if context else []
    parameters.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=Annotated[Optional[str], typer.Argument(help=help_text)]))
    parameters += [_parameter(flag) for flag in command.flags]

    def run(**values: Any) -> int:
        ctx = values.pop("ctx", None)
        fields = _fields(command, values)
        return body(ctx, fields) if context else body(fields)

    run.__signature__ = inspect.Signature(parameters, return_annotation=int)  # type: ignore[attr-defined]
    run.__name__ = run.__qualname__ = command.name
    run.__doc__ = body.__doc__
    return run


def _parameter(flag: Flag) -> inspect.Parameter:
    kind: Any = {env_pair: Optional[list[str]], bool: bool}.get(flag.kind, Optional[flag.kind])
    return inspect.Parameter(flag.field, inspect.Parameter.KEYWORD_ONLY, default=False if flag.kind is bool else None,
                             annotation=Annotated[kind, typer.Option(*flag.names, help=flag.help)])


def _fields(command: Command, values: dict) -> dict:
    """Typer's values as the hand parser stores them (`--env` pairs into a dict); raises UsageError."""
    fields = command.defaults()
    for flag in command.flags:
        value = values[flag.field]
        if flag.kind is env_pair:
            for text in value or ():
                try:
                    flag.store(fields, text)
                except ValueError as e:
                    raise UsageError(str(e), hint=f"use {flag.names[0]} NAME=VALUE") from None
        else:
            fields[flag.field] = value
    fields[command.argument[0]] = values[command.argument[0]]
    return fields

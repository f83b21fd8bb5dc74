"""Masking cuts literal secret values out of what bridge writes, and never hides what a command does."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.security.recording import Recorder, read_cast
from bridge.security.secrets import mask_text
from tests.conftest import Result
from tests.security.conftest import audit_lines

HIDDEN = 'X_TOKEN="$(curl -s x | sudo sh)"; echo done'

MASKED = [
    ("X_TOKEN=abc123; echo done", "X_TOKEN=***; echo done"),
    ("X_TOKEN='a b c';echo done", "X_TOKEN=***;echo done"),
    ('DB_PASSWORD="p;w" ./run && ls', "DB_PASSWORD=*** ./run && ls"),
    ("API_KEY=ab\\;cd|wc", "API_KEY=***|wc"),
    ("deploy --token abc123 --verbose", "deploy --token *** --verbose"),
    ("deploy --token=abc123;ls", "deploy --token=***;ls"),
    ("psql --password=pw123 db", "psql --password=*** db"),
    ("cli --api-key 'k e y' run", "cli --api-key *** run"),
    ("mysql -u root -phunter22 db; echo ok", "mysql -u root -p*** db; echo ok"),
    ("mysqldump -phunter22 db > x.sql", "mysqldump -p*** db > x.sql"),
    ("sshpass -phunter22 ssh host", "sshpass -p*** ssh host"),
    ('curl -H "Authorization: Bearer abc.def" https://x', 'curl -H "Authorization: Bearer ***" https://x'),
    ("curl -H 'authorization: Basic dXNlcjpwYXNz' x", "curl -H 'authorization: Basic ***' x"),
    ("curl -H 'X-Api-Key: abc' x", "curl -H 'X-Api-Key: ***' x"),
    ("git clone https://bob:s3cret@github.com/x.git && ls", "git clone https://bob:***@github.com/x.git && ls"),
    ("psql postgres://app:pw@db:5432/app -c 'select 1'", "psql postgres://app:***@db:5432/app -c 'select 1'"),
]

AS_WRITTEN = [
    HIDDEN,
    "X_TOKEN=$(sudo cat /root/t); echo done",
    "X_TOKEN=`sudo id` ls",
    "API_TOKEN=$OTHER cmd",
    'API_TOKEN="${T:-x}" cmd',
    "deploy --token $T",
    "deploy --token=\"$(vault read t)\"",
    "curl https://u:$PW@host",
    "ls -p foo; grep -p x",
    "tool --keyfile=/etc/k --token-file /run/t",
    "echo $API_TOKEN",
]


@pytest.mark.parametrize("text, expected", MASKED)
def test_literal_values_are_masked_and_nothing_after_them(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize("text", AS_WRITTEN)
def test_expansions_and_non_secrets_are_kept_as_written(text: str) -> None:
    assert mask_text(text) == text


def test_known_values_are_masked_anywhere(tmp_path: Path) -> None:
    assert mask_text("echo s3cr3t-value | tee x", secrets=["s3cr3t-value"]) == "echo *** | tee x"


def test_client_audit_line_keeps_the_substitution(bridge, workspace, home) -> None:
    assert bridge("init", cwd=workspace).code == 0
    script = 'X_TOKEN="$(echo hidden)"; Y_TOKEN=literal-42; echo done'
    result = bridge("exec", "--", "sh", "-c", script, cwd=workspace)
    assert (result.code, result.out) == (0, "done\n"), result
    log = home.path / ".local/state/bridge/audit.jsonl"
    [entry] = [json.loads(line) for line in log.read_text().splitlines() if '"exec"' in line]
    assert 'X_TOKEN="$(echo hidden)"; Y_TOKEN=***; echo done' in entry["command"], entry
    assert "literal-42" not in log.read_text()


def test_server_audit_line_keeps_the_substitution(guard: Callable[..., Result], audit_log: Path) -> None:
    run = guard("alice", 'X_TOKEN="$(id -u)"; echo --password=hunter22; echo after')
    assert run.code == 0 and run.out.endswith("after\n"), run
    [entry] = audit_lines(audit_log)
    assert entry["command"] == 'X_TOKEN="$(id -u)"; echo --password=***; echo after'


def test_recording_header_is_masked_the_same_way(tmp_path: Path) -> None:
    cast = tmp_path / "s.cast"
    with Recorder(cast, title=HIDDEN, command="mysql -phunter22 db; echo ok"):
        pass
    header = read_cast(cast)[0]
    assert (header["title"], header["command"]) == (HIDDEN, "mysql -p*** db; echo ok")

"""Every client operation leaves one audit line, secrets masked, and the chain verifies."""
from __future__ import annotations

import json



def _lines(home) -> list[dict]:
    path = home.path / ".local/state/bridge/audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_operations_are_audited_and_reads_are_not(bridge, workspace, home) -> None:
    assert bridge("init", cwd=workspace).code == 0
    assert bridge("remote", "add", "x", "ssh://h/srv", cwd=workspace).code == 0
    assert bridge("remote", "list", cwd=workspace).code == 0
    refused = bridge("remote", "add", "x", "ssh://h/srv", cwd=workspace)
    assert refused.code == 2
    lines = _lines(home)
    assert [(line["action"], line["exit_code"]) for line in lines] == [("init", 0), ("remote", 0), ("remote", 2)]
    assert bridge("audit", "verify").code == 0


def test_secret_env_values_never_reach_the_audit_log(bridge, workspace, home) -> None:
    bridge("init", cwd=workspace)
    result = bridge("exec", "--env", "API_TOKEN=s3cr3t-value-123", "--", "true", cwd=workspace)
    assert result.code == 0, result
    text = (home.path / ".local/state/bridge/audit.jsonl").read_text()
    assert "exec" in text and "API_TOKEN" in text
    assert "s3cr3t-value-123" not in text

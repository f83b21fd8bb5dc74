"""Config loading: file:line:key errors, did-you-mean, precedence, bombs refused, the parsed-file cache."""
from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from bridge import config as cfg
from bridge import paths
from bridge.errors import ConfigError
from tests.conftest import write_config

GOOD = """\
workspace: myapp
default: prod
remotes:
  prod:    {url: "ssh://deploy@203.0.113.10:22/srv/myapp", identity: ~/.ssh/id_ed25519}
  edge:    {url: "ssh://deploy@localhost:2222/srv/myapp", via: relay}
  relay:   {url: "ssh://tunnel@relay.example.com"}
  scratch: local:///tmp/myapp-deploy
groups:
  web: [prod, edge]
deploy:
  install: auto
  commands: ["python -m myapp.migrate"]
  keep_releases: 5
exec:
  timeout: 0
  sandbox: {image: "python:3.12-slim", memory: 512m, cpus: 1.0, pids: 256, network: none}
tunnel:
  relay: relay
  forwards: ["2222:localhost:22"]
  keepalive: 15
"""


def test_design_example_loads_into_frozen_dataclasses(workspace: Path) -> None:
    write_config(workspace, GOOD)
    config = cfg.load(workspace)
    assert config.workspace == "myapp"
    assert config.remotes["edge"].via == "relay"
    assert config.remotes["scratch"].url == "local:///tmp/myapp-deploy"
    assert config.groups["web"] == ("prod", "edge")
    assert config.deploy.commands == ("python -m myapp.migrate",)
    assert config.exec.sandbox is not None and config.exec.sandbox.pids == 256
    assert config.tunnel.forwards == ("2222:localhost:22",)
    with pytest.raises(AttributeError):
        config.workspace = "x"  # type: ignore[misc]


def test_found_from_a_subfolder(workspace: Path) -> None:
    write_config(workspace, GOOD)
    deep = workspace / "a" / "b"
    deep.mkdir(parents=True)
    assert cfg.load(deep).root == workspace.resolve()


@pytest.mark.parametrize("text, needle, hint", [
    ("workspace: x\nremotes:\n  prod: {url: 'ssh://h/p', identiy: k}\n", ":3: unknown key `identiy`", "identity"),
    ("workspace: x\ndeploy:\n  keep_releases: many\n", ":3: `deploy.keep_releases` must be a number", "keep_releases"),
    ("workspace: x\nremotes:\n  a: {url: 'ssh://h/p', via: relai}\n  relay: ssh://r\n", ":3:", "relay"),
    ("workspace: x\ngroups:\n  web: [nope]\n", ":3: `groups.web` names `nope`", ""),
    ("workspace: x\nremotes:\n  a: {url: 'local://relative'}\n", ":3:", "absolute"),
    ("workspace: [unclosed\n", ":", "syntax"),
])
def test_errors_name_file_line_key_and_fix(workspace: Path, text: str, needle: str, hint: str) -> None:
    path = write_config(workspace, text)
    with pytest.raises(ConfigError) as caught:
        cfg.load(workspace)
    assert str(path) + needle in caught.value.message
    assert hint in (caught.value.hint + caught.value.message)


def test_alias_bomb_is_refused_not_expanded(workspace: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]" for i in range(1, 9)]
    write_config(workspace, "\n".join(levels) + "\n")
    with pytest.raises(ConfigError, match="alias bomb"):
        cfg.load(workspace)


def test_huge_file_is_refused(workspace: Path) -> None:
    write_config(workspace, "workspace: x\n" + "# pad\n" * 100_000)
    with pytest.raises(ConfigError, match="too large"):
        cfg.load(workspace)


def test_precedence_env_over_workspace_over_user(workspace: Path, home, monkeypatch) -> None:
    user = cfg.user_config_path()
    user.parent.mkdir(parents=True)
    user.write_text("exec:\n  timeout: 7\n  forks: 3\nremotes:\n  mine: ssh://me@box/srv\n")
    write_config(workspace, "workspace: x\nexec:\n  timeout: 9\n")
    config = cfg.load(workspace)
    assert (config.exec.timeout, config.exec.forks) == (9, 3)
    assert "mine" in config.remotes
    monkeypatch.setenv("BRIDGE_EXEC_TIMEOUT", "11")
    assert cfg.load(workspace).exec.timeout == 11
    monkeypatch.setenv("BRIDGE_EXEC_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="BRIDGE_EXEC_TIMEOUT"):
        cfg.load(workspace)



@pytest.mark.parametrize("line, needle", [
    ("remotes:\n  a: {url: 'ssh://h/p', connect_timeout: -1}", "`remotes.a.connect_timeout` must be a number more than 0"),
    ("remotes:\n  a: {url: 'ssh://h/p', connect_timeout: 0}", "`remotes.a.connect_timeout` must be a number more than 0"),
    ("remotes:\n  a: {url: 'ssh://h/p', connect_timeout: .inf}", "`remotes.a.connect_timeout` must be a number more than 0 and at most 3600, got inf"),
    ("exec:\n  timeout: -1", "`exec.timeout` must be a number from 0 to 2592000 (0: none)"),
    ("exec:\n  timeout: .nan", "`exec.timeout` must be a number"),
    ("exec:\n  forks: 0", "`exec.forks` must be a number from 1 to 1024, got 0"),
    ("exec:\n  forks: 100000", "`exec.forks` must be a number from 1 to 1024, got 100000"),
    ("tunnel:\n  keepalive: 0", "`tunnel.keepalive` must be a number more than 0"),
    ("tunnel:\n  backoff_cap: -5", "`tunnel.backoff_cap` must be a number more than 0"),
    ("deploy:\n  keep_releases: 0", "`deploy.keep_releases` must be a number from 1 to 1000"),
    ("exec:\n  sandbox:\n    cpus: 0", "`exec.sandbox.cpus` must be a number from 0.01"),
    ("exec:\n  sandbox:\n    pids: -1", "`exec.sandbox.pids` must be a number from 1"),
    ("exec:\n  sandbox:\n    pool: 1000", "`exec.sandbox.pool` must be a number from 0 to 64"),
    ("exec:\n  sandbox:\n    memory: 1k", "`exec.sandbox.memory` must be a size from 6m to 1t"),
    ("exec:\n  sandbox:\n    memory: lots", "`exec.sandbox.memory` must be a size"),
    ("exec:\n  sandbox:\n    output_limit: 0", "`exec.sandbox.output_limit` must be a size"),
])
def test_numbers_out_of_range_are_refused_at_load_with_file_line_key(workspace: Path, line: str, needle: str) -> None:
    path = write_config(workspace, f"workspace: x\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load(workspace)
    assert f"{path}:{line.count(chr(10)) + 2}: {needle}" in caught.value.message, caught.value.message
    assert caught.value.hint.startswith("set `")


@pytest.mark.parametrize("var, value, needle", [
    ("BRIDGE_FORKS", "0", "$BRIDGE_FORKS: `exec.forks` must be a number from 1 to 1024, got '0'"),
    ("BRIDGE_EXEC_TIMEOUT", "-3", "$BRIDGE_EXEC_TIMEOUT: `exec.timeout` must be a number from 0"),
    ("BRIDGE_TUNNEL_KEEPALIVE", "-1", "$BRIDGE_TUNNEL_KEEPALIVE: `tunnel.keepalive` must be"),
])
def test_environment_overrides_are_checked_and_named(workspace: Path, monkeypatch, var: str, value: str,
                                                     needle: str) -> None:
    write_config(workspace, "workspace: x\nexec:\n  forks: 4\n  timeout: 3\n")
    monkeypatch.setenv("BRIDGE_EXEC_TIMEOUT", "5")  # a second variable under `exec:` must not take the blame
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        cfg.load(workspace)
    assert caught.value.message.startswith(needle), caught.value.message
    assert caught.value.hint.startswith(f"set {var} to ")


def test_a_file_value_next_to_an_env_override_keeps_its_file_and_line(workspace: Path, monkeypatch) -> None:
    path = write_config(workspace, "workspace: x\nexec:\n  forks: 0\n")
    monkeypatch.setenv("BRIDGE_EXEC_TIMEOUT", "5")
    with pytest.raises(ConfigError, match=f"^{path}:3: `exec.forks`"):
        cfg.load(workspace)


def test_flags_out_of_range_exit_2_on_the_fast_and_the_typer_path(bridge, workspace) -> None:
    write_config(workspace, "workspace: x\nremotes:\n  here: local:///tmp\n")
    for flags in (["--timeout", "-1"], ["--timeout=nan"], ["--forks", "0"], ["--forks", "100000"]):
        for extra in ([], ["--tty"]):  # --tty is left to Typer
            refused = bridge("exec", *flags, *extra, "--", "echo", "ran", cwd=workspace)
            assert (refused.code, refused.out) == (2, ""), (flags, extra, refused)
            assert f"bridge: error: {flags[0].split('=')[0]} " in refused.err and "hint: give" in refused.err


# -- the parsed-config cache (bridge.yamlfile): same results, no YAML work when nothing changed ----------

def _settle(path: Path, seconds_ago: float = 60) -> None:
    """Date a file back, as an edit made a while ago (a file written this instant is not cached)."""
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def _cache_files() -> list[Path]:
    return sorted(paths.cache_dir().glob("*.marshal"))


def test_unchanged_config_is_read_from_a_private_cache_without_yaml(workspace: Path, monkeypatch) -> None:
    _settle(write_config(workspace, GOOD))
    first = cfg.load(workspace)
    [cache] = _cache_files()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    monkeypatch.setitem(sys.modules, "yaml", None)  # any YAML parsing now fails loudly
    assert cfg.load(workspace) == first


def test_an_edit_is_seen_on_the_next_load(workspace: Path) -> None:
    path = write_config(workspace, GOOD)
    _settle(path, 120)
    assert cfg.load(workspace).exec.timeout == 0
    path.write_text(GOOD.replace("timeout: 0", "timeout: 7"))  # same size: the stamp's mtime tells
    _settle(path, 60)
    assert cfg.load(workspace).exec.timeout == 7
    stamp = path.stat()
    path.write_text(GOOD.replace("timeout: 0", "timeout: 70"))  # same mtime: the size tells
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert cfg.load(workspace).exec.timeout == 70


def test_a_broken_file_after_a_cached_good_one_still_names_file_and_line(workspace: Path) -> None:
    path = write_config(workspace, GOOD)
    _settle(path, 120)
    cfg.load(workspace)
    path.write_text(GOOD.replace("keep_releases: 5", "keep_releases: many"))
    _settle(path, 60)
    with pytest.raises(ConfigError) as caught:
        cfg.load(workspace)
    assert f"{path}:13: `deploy.keep_releases` must be a number" in caught.value.message


def test_a_corrupt_or_exposed_cache_is_ignored_and_rewritten(workspace: Path, monkeypatch) -> None:
    _settle(write_config(workspace, GOOD))
    expected = cfg.load(workspace)
    [cache] = _cache_files()
    cache.write_bytes(b"\x00garbage" * 10)
    assert cfg.load(workspace) == expected
    cache.chmod(0o644)  # readable by others: not trusted, replaced by a private one
    assert cfg.load(workspace) == expected
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    if os.getuid() == 0:  # someone else's file (only root can make one here): not trusted either
        os.chown(cache, 65534, 65534)
        assert cfg.load(workspace) == expected
        assert cache.stat().st_uid == 0
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert cfg.load(workspace) == expected


def test_a_file_written_this_instant_is_parsed_but_not_cached(workspace: Path) -> None:
    write_config(workspace, GOOD)
    cfg.load(workspace)
    assert _cache_files() == []


def test_a_bad_connect_timeout_is_a_config_error_through_the_keeper_and_without(bridge, workspace, sshd) -> None:
    path = write_config(workspace, f"workspace: x\nremotes:\n  a: {{url: '{sshd.url('/tmp')}', connect_timeout: -1}}\n")
    for flags in ([], ["--no-reuse"]):
        refused = bridge("exec", *flags, "a", "--", "echo", "ran", cwd=workspace, timeout=60)
        assert (refused.code, refused.out) == (2, ""), refused
        assert f"bridge: error: {path}:3: `remotes.a.connect_timeout` must be a number more than 0" in refused.err
    assert sshd.accepted_connections() == 0

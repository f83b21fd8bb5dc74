"""`bridge init`, `bridge remote`, `bridge test` and the error contract, through the real main()."""
from __future__ import annotations

import json
import subprocess

from tests.conftest import write_config
from tests.fleet_probe import probe  # noqa: F401 - fixture


def test_init_makes_a_git_workspace_with_a_local_remote_and_is_idempotent(bridge, workspace, home) -> None:
    first = bridge("init", cwd=workspace)
    assert first.code == 0, first
    assert (workspace / ".git").is_dir()
    text = (workspace / "bridge.yaml").read_text()
    assert "workspace: \"ws\"" in text and "local: {url: \"local://" in text
    assert str(home.path / ".local/share/bridge") in text
    second = bridge("init", cwd=workspace)
    assert second.code == 0, second
    assert (workspace / "bridge.yaml").read_text() == text
    assert "kept" in second.out


def test_init_with_a_remote_and_name(bridge, workspace, sshd) -> None:
    result = bridge("init", "--name", "shop", "--remote", "prod", sshd.url("/tmp/shop"), cwd=workspace)
    assert result.code == 0, result
    listed = json.loads(bridge("remote", "list", "--json", cwd=workspace).out)
    assert [r["name"] for r in listed["remotes"]] == ["prod"]
    assert "workspace: \"shop\"" in (workspace / "bridge.yaml").read_text()


def test_remote_add_list_remove_keeps_comments(bridge, workspace) -> None:
    write_config(workspace, "# my settings\nworkspace: w  # inline\nremotes:\n  # the box\n  a: ssh://h1/srv\n"
                            "groups:\n  web: [a]\n")
    assert bridge("remote", "add", "b", "deploy@h2:/srv/b", "--via", "a", cwd=workspace).code == 0
    text = (workspace / "bridge.yaml").read_text()
    assert "# my settings" in text and "# inline" in text and "# the box" in text
    assert 'b: {url: "deploy@h2:/srv/b", via: "a"}' in text
    listed = bridge("remote", "list", cwd=workspace)
    assert "a\tssh://h1/srv" in listed.out and "b\tdeploy@h2:/srv/b" in listed.out
    refused = bridge("remote", "remove", "a", cwd=workspace)
    assert refused.code == 2 and "group `web`" in refused.err
    assert bridge("remote", "remove", "b", cwd=workspace).code == 0
    assert "h2" not in (workspace / "bridge.yaml").read_text()
    assert "# the box" in (workspace / "bridge.yaml").read_text()


def test_remote_add_refuses_duplicates_and_bad_urls_without_touching_the_file(bridge, workspace) -> None:
    write_config(workspace, "workspace: w\nremotes:\n  a: ssh://h1/srv\n")
    before = (workspace / "bridge.yaml").read_bytes()
    dup = bridge("remote", "add", "a", "ssh://h9/x", cwd=workspace)
    assert dup.code == 2 and "already exists" in dup.err
    bad = bridge("remote", "add", "c", "local://relative", cwd=workspace)
    assert bad.code == 2 and "absolute path" in bad.err
    via = bridge("remote", "add", "d", "ssh://h/x", "--via", "nosuch", cwd=workspace)
    assert via.code == 2 and "nosuch" in via.err
    assert (workspace / "bridge.yaml").read_bytes() == before


def test_commands_work_from_a_subfolder(bridge, workspace) -> None:
    write_config(workspace, "workspace: w\nremotes:\n  a: ssh://h1/srv\n")
    sub = workspace / "src" / "pkg"
    sub.mkdir(parents=True)
    assert "ssh://h1/srv" in bridge("remote", "list", cwd=sub).out


def test_outside_a_workspace_says_how_to_start(bridge, tmp_path) -> None:
    result = bridge("remote", "list", cwd=tmp_path)
    assert result.code == 2
    assert "no bridge.yaml" in result.err and "bridge init" in result.err


def test_unknown_target_suggests_a_name(bridge, workspace) -> None:
    write_config(workspace, "workspace: w\nremotes:\n  prod: ssh://h1/srv\n")
    result = bridge("test", "prdo", cwd=workspace)
    assert result.code == 2 and "did you mean `prod`" in result.err


def test_usage_error_exits_2_and_help_has_an_example(bridge) -> None:
    assert bridge("no-such-command").code == 2
    help_text = bridge("remote", "add", "--help").out
    assert "Example: bridge remote add" in help_text


def test_local_remote_is_tested_without_ssh(bridge, workspace) -> None:
    bridge("init", cwd=workspace)
    result = bridge("test", "--json", cwd=workspace)
    assert result.code == 0, result
    checks = {c["name"]: c["ok"] for c in json.loads(result.out)[0]["checks"]}
    assert checks["git"] and checks["python3"] and checks["disk free"]


def test_traceback_flag_shows_the_stack(bridge, workspace) -> None:
    write_config(workspace, "workspace: [\n")
    plain = subprocess.run(["python3", "-m", "bridge", "remote", "list"], cwd=workspace, capture_output=True,
                           text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run(["python3", "-m", "bridge", "--traceback", "remote", "list"], cwd=workspace,
                           capture_output=True, text=True)
    assert "Traceback" in debug.stderr


def test_command_map_matches_what_each_module_registers() -> None:
    from bridge import cli

    for module, commands in cli.COMMANDS.items():
        app = cli.build_app((module,))
        names = {c.name or c.callback.__name__ for c in app.registered_commands}
        names |= {g.name for g in app.registered_groups}
        assert names == set(commands), module


def test_version_from_the_launcher_and_python_m_without_loading_typer(bridge, home, tmp_path) -> None:
    import sys

    import bridge as package
    from tests.conftest import BRIDGE

    expected = f"bridge {package.__version__}\n"
    assert (bridge("--version").code, bridge("--version").out) == (0, expected)
    as_module = subprocess.run([sys.executable, "-m", "bridge", "--version"], capture_output=True, text=True,
                               env=home.env, cwd=tmp_path)
    assert (as_module.returncode, as_module.stdout) == (0, expected), as_module.stderr
    after_options = bridge("--traceback", "--version")
    assert (after_options.code, after_options.out) == (0, expected)
    assert "--version" in bridge("--help").out
    timed = subprocess.run([BRIDGE[0], "-X", "importtime", *BRIDGE[1:], "--version"], capture_output=True,
                           text=True, env=home.env)
    assert timed.stdout == expected and " typer" not in timed.stderr and " click" not in timed.stderr


def test_remote_add_default_after_init_lets_exec_name_no_target(bridge, workspace, sshd) -> None:
    assert bridge("init", cwd=workspace).code == 0
    added = bridge("remote", "add", "prod", sshd.url(str(workspace)), "--default", cwd=workspace)
    assert added.code == 0, added
    text = (workspace / "bridge.yaml").read_text()
    assert text.startswith("# bridge workspace settings") and 'workspace: "ws"\ndefault: "prod"\nremotes:\n' in text
    ran = bridge("exec", "--no-reuse", "--", "echo", "on", "prod", cwd=workspace)
    assert (ran.code, ran.out) == (0, "on prod\n"), ran
    listed = json.loads(bridge("remote", "list", "--json", cwd=workspace).out)
    assert [r["name"] for r in listed["remotes"] if r["default"]] == ["prod"]


def test_first_server_remote_does_not_silently_replace_local_and_remote_default_chooses(bridge, workspace) -> None:
    assert bridge("init", cwd=workspace).code == 0
    added = bridge("remote", "add", "prod", "ssh://deploy@h1/srv/app", cwd=workspace)
    assert added.code == 0 and "bridge remote default prod" in added.err, added
    ambiguous = bridge("exec", "--", "true", cwd=workspace)
    assert ambiguous.code == 2 and "bridge remote default NAME" in ambiguous.err, ambiguous
    (workspace / "bridge.yaml").write_text((workspace / "bridge.yaml").read_text().replace(
        'workspace: "ws"\n', 'workspace: "ws"\ndefault: prod   # where exec goes\n'))
    assert bridge("remote", "default", "local", cwd=workspace).code == 0
    text = (workspace / "bridge.yaml").read_text()
    assert 'default: "local"   # where exec goes\n' in text and text.count("default:") == 1
    ran = bridge("exec", "--", "echo", "here", cwd=workspace)
    assert (ran.code, ran.out) == (0, "here\n"), ran
    before = (workspace / "bridge.yaml").read_bytes()
    unknown = bridge("remote", "default", "nosuch", cwd=workspace)
    assert unknown.code == 2 and "nosuch" in unknown.err and (workspace / "bridge.yaml").read_bytes() == before


def test_test_forks_1_checks_one_host_at_a_time(bridge, sshd_factory, workspace, probe) -> None:
    servers = [sshd_factory(extra_config=probe.sshd_config) for _ in range(2)]
    write_config(workspace, "workspace: w\nremotes:\n" + "".join(
        f"  h{i}: {{url: \"{s.url('/tmp')}\"}}\n" for i, s in enumerate(servers)))
    result = bridge("test", "all", "--forks", "1", "--json", cwd=workspace)
    assert [r["host"] for r in json.loads(result.out)] == ["h0", "h1"], result
    assert all(r["status"] != "unreachable" for r in json.loads(result.out)), result
    seen = probe.seen()
    assert len(seen) >= 2 and max(seen) == 1, seen  # each host's checks ran alone

"""Tokens: user tokens and `bridge hub login` (pin and keep 0600), expiry, revocation, bad tokens: one line each."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.conftest import Home
from tests.hub.conftest import Hub


def _login_file(home: Home, hub: Hub) -> Path:
    return Path(home.env["XDG_CONFIG_HOME"]) / "bridge" / "hub" / f"{hub.host}_{hub.port}.json"


def test_login_shows_and_pins_the_fingerprint_and_keeps_the_token_0600(bridge, home: Home, hub: Hub) -> None:
    token = hub.token("user", "ann", "--role", "operator", "--workspace", "app", "--ttl", "8h")
    result = bridge("hub", "login", hub.address, "--token", token)
    assert result.code == 0, result
    assert hub.fingerprint in result.out and "logged in as ann (operator)" in result.out
    saved = _login_file(home, hub)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"token": token, "fingerprint": hub.fingerprint}
    assert token not in result.out + result.err


def test_login_refuses_a_hub_with_another_certificate(bridge, home: Home, hub: Hub, tmp_path: Path) -> None:
    other = Hub(home, tmp_path / "other", hub.port, tmp_path / "o.log")  # same port, other state: other cert
    token = other.token("user", "ann", "--role", "operator")
    result = bridge("hub", "login", hub.address, "--token", token)
    assert result.code == 255
    assert "not the pinned" in result.err and "hint:" in result.err
    assert not _login_file(home, hub).exists()


def test_an_expired_token_is_refused_with_a_next_step(bridge, hub: Hub) -> None:
    # A token that expired a minute ago, signed by this hub's key: made by the library itself, since the CLI
    # only issues positive lifetimes and waiting out the clock-skew leeway would take half a minute.
    from bridge.hub.store import Store
    from bridge.hub.tokens import Signer

    expired = Signer(hub.state, Store(hub.state / "hub.db"), hub.fingerprint).user("ann", "operator", [], -90)
    result = bridge("hub", "login", hub.address, "--token", expired)
    assert result.code == 255
    assert "token refused: expired" in result.err and "hint:" in result.err
    assert expired not in result.err


def test_a_revoked_user_token_stops_working(bridge, hub: Hub) -> None:
    token = hub.token("user", "bob", "--role", "viewer")
    assert bridge("hub", "login", hub.address, "--token", token).code == 0
    assert hub.cli("revoke", "bob").returncode == 0
    result = bridge("hub", "login", hub.address, "--token", token)
    assert result.code == 255 and "revoked" in result.err
    assert hub.api("/api/v1/agents", token)[0] == 401


def test_bad_input_is_one_line(bridge, hub: Hub) -> None:
    assert "unknown role `wizard`" in hub.cli("token", "user", "ann", "--role", "wizard").stderr
    assert "bad name" in hub.cli("token", "agent", "a b").stderr
    assert "never issued" in hub.cli("revoke", "nobody").stderr
    result = bridge("hub", "login", hub.address, "--token", "not-a-token")
    assert result.code == 2 and "not a bridge hub token" in result.err
    assert hub.cli("token", "user", "ann", "--role", "viewer", "--ttl", "soon").returncode == 2


def test_the_api_wants_a_bearer_token(hub: Hub, admin: str) -> None:
    assert hub.api("/api/v1/agents", "garbage")[0] == 401
    assert hub.api("/api/v1/agents", admin) == (200, {"agents": []})


def test_hub_token_from_the_environment(bridge, hub: Hub) -> None:
    token = hub.token("user", "cy", "--role", "viewer")
    result = bridge("hub", "login", hub.address, env={"BRIDGE_HUB_TOKEN": token})
    assert result.code == 0, result
    assert os.environ.get("BRIDGE_HUB_TOKEN") is None


def test_the_store_closes_every_sqlite_connection_it_opens(tmp_path: Path) -> None:
    """Each call opens and closes: a serving hub must not pile up open database files (one per agent hello)."""
    from bridge.hub.store import Store

    store = Store(tmp_path / "hub.db")
    for n in range(50):
        store.enrol(f"a{n}", "key")
        assert store.agent(f"a{n}") is not None
    open_files = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    assert str(tmp_path / "hub.db") not in open_files

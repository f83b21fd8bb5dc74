"""URL forms and target resolution."""
from __future__ import annotations

import pytest

from bridge.config import check_text
from bridge.errors import ConfigError, UsageError
from bridge.targets import parse_url, resolve


@pytest.mark.parametrize("url, scheme, user, host, port, path", [
    ("ssh://deploy@203.0.113.10:2200/srv/app", "ssh", "deploy", "203.0.113.10", 2200, "/srv/app"),
    ("ssh://example.com/srv/app", "ssh", None, "example.com", None, "/srv/app"),
    ("ssh://[::1]:22/x", "ssh", None, "::1", 22, "/x"),
    ("deploy@host:/srv/app", "ssh", "deploy", "host", None, "/srv/app"),
    ("myalias", "ssh", None, "myalias", None, ""),
    ("local:///tmp/x y", "local", None, "", None, "/tmp/x y"),
])
def test_url_forms(url, scheme, user, host, port, path) -> None:
    e = parse_url(url)
    assert (e.scheme, e.user, e.host, e.port, e.path) == (scheme, user, host, port, path)


def test_hub_urls_name_hub_agent_and_path() -> None:
    e = parse_url("hub://deploy@hub.example.com:8443/web-1/srv/app")
    assert (e.scheme, e.user, e.host, e.port, e.agent, e.path) == ("hub", "deploy", "hub.example.com", 8443, "web-1",
                                                                   "/srv/app")
    assert parse_url("hub://hub.example.com/web1/srv").port is None
    assert e.display() == "deploy@web-1 via hub hub.example.com:8443"


@pytest.mark.parametrize("bad", ["ssh://host:99999/x", "local://rel", "ht tp://x", "", "hub://hub.example.com",
                                 "hub://h:99999/a/p", "hub://h/bad agent/p"])
def test_bad_urls_are_config_errors(bad) -> None:
    with pytest.raises(ConfigError):
        parse_url(bad)


CONFIG = check_text("""\
workspace: w
default: a
remotes: {a: "ssh://h1/p", b: "ssh://h2/p", c: "ssh://h3/p", relay: "ssh://r", d: {url: "ssh://h4/p", via: relay}}
groups: {web: [a, b]}
""", "test")


@pytest.mark.parametrize("spec, names", [
    (None, ["a"]), ("b", ["b"]), ("web", ["a", "b"]), ("web,c,a", ["a", "b", "c"]),
    ("all", ["a", "b", "c", "d"]),
])
def test_resolve(spec, names) -> None:
    assert [r.name for r in resolve(CONFIG, spec)] == names


def test_unknown_target_suggests() -> None:
    with pytest.raises(UsageError) as caught:
        resolve(CONFIG, "wbe")
    assert "web" in caught.value.hint

"""A real browser on the hub's page: Debian's chromium driven by Playwright, the hub's certificate pinned by key.

Shared by tests/hub/test_web*.py and bench/bench_webterm.py. Chromium is told to accept exactly the
hub's self-signed key (`--ignore-certificate-errors-spki-list`), not any certificate.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30000  # generous: the machine is shared


def spki_pin(cert: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate: what chromium's SPKI list takes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def launch(playwright: Any, hub_state: Path, args: Sequence[str] = ()) -> Any:
    """Chromium (headless, no sandbox: tests run as root) trusting only the hub's key; `args` are more flags."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", f"--ignore-certificate-errors-spki-list={spki_pin(hub_state / 'tls.crt')}", *args])


def sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_selector("#home:not([hidden])", timeout=WAIT_MS)


def screen(page: Any) -> str:
    """The terminal's whole buffer (scrollback included) as text, lines joined with newlines."""
    return page.evaluate("""() => { const b = window.bridgeTerm.buffer.active, out = [];
        for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
        return out.join('\\n'); }""")


def wait_screen(page: Any, needle: str, timeout: int = WAIT_MS) -> None:
    """Wait until the terminal shows `needle`; the screen and the page's state are in the error if not."""
    from playwright.sync_api import TimeoutError

    try:
        _wait_screen(page, needle, timeout)
    except TimeoutError as e:
        state = page.evaluate("() => document.getElementById('term-state').textContent")
        raise AssertionError(f"{needle!r} not on screen ({state}):\n{screen(page)}") from e


def _wait_screen(page: Any, needle: str, timeout: int) -> None:
    page.wait_for_function("""(needle) => { const b = window.bridgeTerm && window.bridgeTerm.buffer.active;
        if (!b) return false;
        for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true).includes(needle)) return true;
        return false; }""", arg=needle, timeout=timeout)


def open_shell(page: Any, agent: str = "web1") -> None:
    page.click(f"#agents tr:has-text('{agent}') button")
    page.wait_for_selector("#term-view:not([hidden])", timeout=WAIT_MS)
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'connected'",
                           timeout=WAIT_MS)
    page.wait_for_function("() => sessionStorage.getItem('bridge.term') !== null", timeout=WAIT_MS)
    wait_prompt(page)


def wait_prompt(page: Any) -> None:
    """Wait for the shell's `$ ` prompt at the cursor: keys typed earlier reach the server's guard while it
    still starts, on a terminal not yet raw (its cooked echo, and a Ctrl-C that ends the guard)."""
    page.wait_for_function("""() => { const b = window.bridgeTerm.buffer.active;
        return b.getLine(b.baseY + b.cursorY).translateToString(true).startsWith('$'); }""", timeout=WAIT_MS)


def kept_session(page: Any) -> dict:
    return json.loads(page.evaluate("() => sessionStorage.getItem('bridge.term')") or "{}")

"""The web terminal in a real browser: Debian's chromium (Playwright) on a real hub, agent and sshd.

The hub logs in to the agent's sshd with its own key, granted `operator` by `bridge keys add`, so
the server's guard decides every session (and its no-sudo role runs as the `runner` account).
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import BRIDGE, Home
from tests.hub.conftest import wait_for
from tests.hub.test_api import ApiScene, api  # noqa: F401 - the hub + agent + guarded sshd scene
from tests.hub.web_scene import WAIT_MS, kept_session, launch, open_shell, screen, sign_in, wait_prompt, wait_screen
from tests.security.conftest import bridge_exe, run_as_policy, runner, sec  # noqa: F401 - fixtures

SCREENS = os.environ.get("BRIDGE_SCREENS")  # a folder to save the page's screenshots in (docs/screens/)

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(api: ApiScene) -> Iterator[object]:  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright, api.hub.state)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, api: ApiScene):  # noqa: F811
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.on("console", lambda message: print("console:", message.text))  # shown when a test fails
    yield page
    context.close()


def url(api: ApiScene) -> str:  # noqa: F811
    return f"https://{api.hub.address}/"


def _shot(page, name: str) -> None:
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENS) / name))


def _type(page, text: str) -> None:
    page.keyboard.type(text)
    page.keyboard.press("Enter")


SIZE_LINES = r"""() => { const b = window.bridgeTerm.buffer.active; let n = 0;
    for (let i = 0; i < b.length; i++) if (/^SZ:\d+ \d+:ZS/.test(b.getLine(i).translateToString(true))) n++;
    return n; }"""


def _stty_size(page) -> tuple[int, int]:
    """What the PTY says its size is (`stty size`: rows cols), from a new line of output."""
    before = page.evaluate(SIZE_LINES)
    _type(page, "echo SZ:$(stty size):ZS")
    page.wait_for_function(f"() => ({SIZE_LINES})() > {before}", timeout=WAIT_MS)
    last = [line for line in screen(page).splitlines() if line.startswith("SZ:")][-1]
    rows, cols = last[3:-3].split()
    return int(rows), int(cols)


def test_sign_in_open_a_shell_echo_resize_paste(api: ApiScene, page) -> None:  # noqa: F811
    sign_in(page, url(api), api.operator)
    page.wait_for_selector("#agents td.online", timeout=WAIT_MS)
    assert "web1" in page.inner_text("#agents")
    cookie = next(c for c in page.context.cookies() if c["name"] == "bridge_session")
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert api.operator not in cookie["value"]
    _shot(page, "webterm-signed-in.png")

    open_shell(page)
    _type(page, "echo hello; printf '\\342\\234\\223 \\033[31mred\\033[0m\\n'")
    wait_screen(page, "hello")
    wait_screen(page, "✓ red")
    assert _colour_of(page, "✓ red", "r") == 1  # red, from the 16-colour palette
    _type(page, "sudo -n id; echo sudo-rc=$?")  # a no-sudo role: the kernel refuses (no_new_privs), in the shell
    wait_screen(page, "sudo-rc=1")
    assert 'The "no new privileges" flag is set' in screen(page)
    assert "uid=0" not in screen(page)

    term = page.evaluate("() => [window.bridgeTerm.rows, window.bridgeTerm.cols]")
    assert _stty_size(page) == tuple(term)
    page.set_viewport_size({"width": 700, "height": 450})
    page.wait_for_function(f"() => window.bridgeTerm.cols < {term[1]}", timeout=WAIT_MS)
    smaller = page.evaluate("() => [window.bridgeTerm.rows, window.bridgeTerm.cols]")
    assert _stty_size(page) == tuple(smaller)

    # a paste as the browser delivers it: a paste event carrying the clipboard's text
    page.evaluate("""() => {
        const data = new DataTransfer(); data.setData('text/plain', "echo pas''ted");
        document.querySelector('#terminal textarea').dispatchEvent(
            new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true})); }""")
    page.keyboard.press("Enter")
    wait_screen(page, "pasted")
    _shot(page, "webterm-terminal.png")


COLOUR = """([needle, char]) => { const b = window.bridgeTerm.buffer.active;
    for (let i = b.length - 1; i >= 0; i--) { const line = b.getLine(i), text = line.translateToString(true);
        if (!text.startsWith(needle)) continue;
        const cell = line.getCell(text.indexOf(char));
        return cell.isFgPalette() ? cell.getFgColor() : -1; }
    return -2; }"""


def _colour_of(page, needle: str, char: str) -> int:
    """The palette colour of `char` in the last line starting with `needle` (-1: not a palette colour)."""
    return page.evaluate(COLOUR, [needle, char])


def test_copy_takes_the_selected_text(api: ApiScene, page) -> None:  # noqa: F811
    sign_in(page, url(api), api.operator)
    open_shell(page)
    _type(page, "echo copy-$((40+2))-me")
    wait_screen(page, "copy-42-me")
    # select as a person does, with the mouse: a double-click on the word in the output line
    row = page.evaluate("""() => { const b = window.bridgeTerm.buffer.active;
        for (let i = b.length - 1; i >= 0; i--) if (b.getLine(i).translateToString(true) === 'copy-42-me') return i - b.viewportY;
        return -1; }""")
    box = page.locator("#terminal .xterm-screen").bounding_box()
    cell_w = box["width"] / page.evaluate("() => window.bridgeTerm.cols")
    cell_h = box["height"] / page.evaluate("() => window.bridgeTerm.rows")
    page.mouse.click(box["x"] + cell_w * 0.5, box["y"] + cell_h * (row + 0.5))
    page.mouse.down()
    page.mouse.move(box["x"] + cell_w * 10.5, box["y"] + cell_h * (row + 0.5), steps=5)
    page.mouse.up()
    assert page.evaluate("() => window.bridgeTerm.getSelection()") == "copy-42-me"
    # the copy event as the browser sends it on Ctrl+Insert or the menu: xterm.js fills the clipboard
    copied = page.evaluate("""() => { const data = new DataTransfer();
        document.querySelector('#terminal textarea').dispatchEvent(
            new ClipboardEvent('copy', {clipboardData: data, bubbles: true, cancelable: true}));
        return data.getData('text/plain'); }""")
    assert copied == "copy-42-me"


def test_the_keyboard_alone_signs_in_opens_a_terminal_and_leaves_it(api: ApiScene, page) -> None:  # noqa: F811
    page.goto(url(api))
    page.wait_for_selector("#signin:not([hidden])", timeout=WAIT_MS)
    page.keyboard.press("Tab")  # from the page's start to the token field
    assert page.evaluate("() => document.activeElement.id") == "token"
    page.keyboard.type(api.operator)
    page.keyboard.press("Enter")
    page.wait_for_selector("#agents td.online", timeout=WAIT_MS)
    for _ in range(10):  # Tab to the agent's Open terminal button
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "Open terminal":
            break
    else:
        raise AssertionError("Tab never reached the Open terminal button")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'connected'",
                           timeout=WAIT_MS)
    wait_prompt(page)
    _type(page, "echo keys-$((3*3))")  # typed into the terminal, which took the focus
    wait_screen(page, "keys-9")
    page.keyboard.press("Shift+F6")  # leaves the terminal for the page
    assert page.evaluate("() => document.activeElement.id") == "term-back"
    page.keyboard.press("Enter")
    page.wait_for_selector("#home:not([hidden])", timeout=WAIT_MS)


@pytest.fixture
def workspace_folder(runner) -> Iterator[Path]:  # noqa: F811
    """A deployed workspace's folder (its `current` inside) that the guard's `runner` account can enter."""
    folder = Path(tempfile.mkdtemp(prefix="bridge-ws-", dir="/tmp"))
    (folder / "current").mkdir()
    folder.chmod(0o755)
    yield folder
    for path in (folder / "current", folder):
        path.rmdir()


def test_a_command_runs_in_the_workspace_folder_its_agent_reported(api: ApiScene, page, agent_factory,  # noqa: F811
                                                                   workspace_folder: Path) -> None:
    agent = agent_factory("web2").start(api.hub.url, api.hub.token("agent", "web2"), "--ssh",
                                        f"127.0.0.1:{api.server.port}", "--ssh-user", api.server.user,
                                        "--workspace", f"app={workspace_folder}")
    wait_for(agent.connected, 30)
    sign_in(page, url(api), api.operator)
    page.wait_for_selector("#agents tr:has-text('web2') td.online", timeout=WAIT_MS)
    page.fill("#workspace", "app")
    page.fill("#command", "echo in:$(pwd)")
    page.click("#agents tr:has-text('web2') button")
    wait_screen(page, f"in:{workspace_folder}/current")
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'exited 0'",
                           timeout=WAIT_MS)


def test_ctrl_c_stops_a_flood(api: ApiScene, page) -> None:  # noqa: F811
    sign_in(page, url(api), api.operator)
    open_shell(page)
    _type(page, "yes flood")
    wait_screen(page, "flood")
    page.wait_for_timeout(1000)  # let it pour for a while
    page.keyboard.press("Control+c")
    _type(page, "echo after-$((6*7))")
    wait_screen(page, "after-42", timeout=60000)
    assert page.evaluate("() => document.getElementById('term-state').textContent") == "connected"

    # Back hangs the session up: it cannot be reattached, and the hub audits its end
    session = kept_session(page)["session"]
    page.click("#term-back")
    page.wait_for_selector("#home:not([hidden])", timeout=WAIT_MS)
    page.wait_for_function("""(sid) => new Promise((done) => {
        const ws = new WebSocket(`wss://${location.host}/ws/term`);
        ws.onopen = () => ws.send(JSON.stringify({type: 'attach', session: sid, offset: 0}));
        ws.onclose = (e) => done(e.code === 4404); })""", arg=session, timeout=WAIT_MS)


def test_reload_reattaches_to_the_same_session_without_loss_or_duplicates(api: ApiScene, page) -> None:  # noqa: F811
    sign_in(page, url(api), api.operator)
    open_shell(page)
    _type(page, "echo one-$((1+1)); export KEPT=yes")
    wait_screen(page, "one-2")
    before = kept_session(page)["session"]
    page.reload()
    page.wait_for_selector("#term-view:not([hidden])", timeout=WAIT_MS)
    wait_screen(page, "one-2")
    assert kept_session(page)["session"] == before
    _type(page, "echo kept-$KEPT")
    wait_screen(page, "kept-yes")
    text = screen(page)
    assert text.count("one-2") == 1  # drawn once after the replay: nothing repeated

    # a network blip: the socket drops, the page reconnects from the offset it has drawn
    page.evaluate("() => window.bridgeView.ws.close()")
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'reconnecting…'",
                           timeout=WAIT_MS)
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'connected'",
                           timeout=WAIT_MS)
    _type(page, "echo three-$((1+2))")
    wait_screen(page, "three-3")
    text = screen(page)
    assert (text.count("one-2"), text.count("kept-yes"), text.count("three-3")) == (1, 1, 1)


def test_a_role_without_terminal_access_sees_none_and_the_socket_refuses(api: ApiScene, page) -> None:  # noqa: F811
    viewer = api.hub.token("user", "vic", "--role", "viewer")
    sign_in(page, url(api), viewer)
    page.wait_for_selector("#no-terminal:not([hidden])", timeout=WAIT_MS)
    assert page.locator("#agents button").count() == 0
    status = page.evaluate("""() => new Promise((done) => {
        const ws = new WebSocket(`wss://${location.host}/ws/term`);
        ws.onopen = () => ws.send(JSON.stringify({type: 'open', agent: 'web1', cols: 80, rows: 24}));
        ws.onclose = (e) => done([e.code, e.reason]); })""")
    assert status == [4403, "role `viewer` has no terminal access"]
    entries = [json.loads(line) for line in (api.hub.state / "audit.jsonl").read_text().splitlines()]
    assert any(e["action"] == "hub.terminal" and e["decision"] == "refused" and e["user"] == "vic" for e in entries)


def _raw_upgrade(api: ApiScene, origin: str, cookie: str = "") -> bytes:  # noqa: F811
    """The first bytes of the hub's answer to a WebSocket upgrade with this Origin (TLS verified by pin)."""
    import base64
    import os
    import socket

    context = ssl.create_default_context(cafile=str(api.hub.state / "tls.crt"))
    context.check_hostname = False
    with socket.create_connection((api.hub.host, api.hub.port), timeout=30) as raw:
        with context.wrap_socket(raw) as tls:
            key = base64.b64encode(os.urandom(16)).decode()
            tls.sendall((f"GET /ws/term HTTP/1.1\r\nHost: {api.hub.address}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                         f"Origin: {origin}\r\nCookie: {cookie}\r\n\r\n").encode())
            return tls.recv(4096)


def test_a_forged_origin_is_refused_even_with_a_valid_cookie(api: ApiScene, page) -> None:  # noqa: F811
    sign_in(page, url(api), api.operator)
    cookie = next(c for c in page.context.cookies() if c["name"] == "bridge_session")["value"]
    assert _raw_upgrade(api, f"https://{api.hub.address}", f"bridge_session={cookie}").startswith(b"HTTP/1.1 101")
    assert _raw_upgrade(api, "https://evil.example", f"bridge_session={cookie}").startswith(b"HTTP/1.1 403")
    assert _raw_upgrade(api, f"https://{api.hub.address}", "bridge_session=forged").startswith(b"HTTP/1.1 403")


def test_sessions_are_audited_recorded_and_replayed(api: ApiScene, page, home: Home) -> None:  # noqa: F811
    sign_in(page, url(api), api.operator)
    page.fill("#command", "printf 'recorded-%s\\n' 23")
    page.click("#agents tr:has-text('web1') button")
    wait_screen(page, "recorded-23")
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'exited 0'",
                           timeout=WAIT_MS)
    page.click("#term-back")
    page.wait_for_selector("#recordings td:has-text('recorded')", timeout=WAIT_MS)
    casts = sorted((api.hub.state / "recordings").glob("*.cast"))
    assert len(casts) == 1
    header = json.loads(casts[0].read_text().splitlines()[0])
    assert (header["version"], header["bridge"]["user"], header["bridge"]["agent"]) == (2, "ann", "web1")
    replayed = subprocess.run([*BRIDGE, "replay", str(casts[0]), "--speed", "100"], capture_output=True, text=True,
                              env=home.env, timeout=60)
    assert replayed.returncode == 0 and "recorded-23" in replayed.stdout
    entries = [json.loads(line) for line in (api.hub.state / "audit.jsonl").read_text().splitlines()]
    ended = [e for e in entries if e["action"] == "hub.terminal.end"]
    assert ended and ended[-1]["exit_code"] == 0 and ended[-1]["user"] == "ann"

    page.click("#recordings button")
    page.wait_for_function("() => document.getElementById('term-state').textContent === 'replay finished'",
                           timeout=WAIT_MS)
    assert "recorded-23" in screen(page)
    _shot(page, "webterm-replay.png")


def test_a_workspace_folder_that_is_not_absolute_is_refused_in_one_line(home: Home, tmp_path: Path) -> None:
    run = subprocess.run([*BRIDGE, "agent", "up", "--state", str(tmp_path / "agent"), "--workspace", "app=srv/app"],
                         capture_output=True, text=True, env=home.env, timeout=60)
    assert run.returncode == 2 and "--workspace 'app=srv/app' is not NAME=/absolute/path" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "agent").exists()

"""Text sent to run on a server (sh, and Python stdlib only, 3.9+, as `python3 -c`): the one way a run
ends at its timeout, on a server and here alike; how an ssh run is tagged so a signal reaches its
whole tree; the unix-socket relay of open_pipe; and the stdin-to-socket half the relays share.
Imports nothing of bridge: the runners, gitlink and the guard (which checks what the timeout
wrapper will run) load it at no cost."""
from __future__ import annotations

import shlex
from collections.abc import Sequence

# argv: [seconds, sh script, run tag]. The script (not the wrapper: a signal() to the run is the
# command's to handle) gets BRIDGE_RUN=<tag> in its environment, when there is a tag.
# The script leads a new session; at the deadline (or when the wrapper itself is signalled: Ctrl-C
# on a local run) its whole process group, background children too, gets SIGTERM, and SIGKILL if
# any of it still runs half a second later; the wrapper exits as soon as none does. A member that
# is already a zombie has ended: it stays in the group until its new parent reaps it, which a
# container's PID 1 may never do (read from /proc, Linux; elsewhere the group must be empty).
# Exit: the script's status, 128+N when a signal killed it, or 124. python3 because sh has no
# portable setsid, and the server has Python 3 anyway (DESIGN §5). It ends with os._exit because it
# exits from its alarm handler too and loads nothing whose atexit could be skipped: not a speed hack.
_TIMEOUT_WRAPPER = """\
import os, signal, sys, time
t, script, tag = float(sys.argv[1]), sys.argv[2], sys.argv[3]
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execve('/bin/sh', ['/bin/sh', '-c', script], dict(os.environ, BRIDGE_RUN=tag) if tag else os.environ)
def running():
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
        names = os.listdir('/proc')
    except OSError as e:
        return not isinstance(e, ProcessLookupError)
    for name in names:
        try:
            with open('/proc/' + name + '/stat') as f:
                state, _, group = f.read().rpartition(')')[2].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pid and state != 'Z':
            return True
    return False
def stop(*_):
    for sig, wait in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except OSError:
            break
        end = time.monotonic() + wait
        while running() and time.monotonic() < end:
            time.sleep(0.01)
        if not running():
            break
    os._exit(124)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, stop)
signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, t)
_, status = os.waitpid(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""

# A thread copying stdin to the socket `s` until EOF, then half-closing it (the peer sees EOF); for
# relays run as `python -c` text (UNIX_RELAY below, sync/gitlink.py's git relay, run here) that
# import os, socket and threading and name their socket `s`.
UPLOAD = r"""
def up():
    try:
        while True:
            d=os.read(0,65536)
            if not d:
                break
            s.sendall(d)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=up,daemon=True).start()
"""


# Runs under `python3 -I -S -c` on the server (stdlib only): argv is the unix socket's path. Connects,
# says so with one NUL byte (or exits 1 with the reason on stderr), then copies bytes both ways.
UNIX_RELAY = r"""
import os,socket,sys,threading
s=socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    sys.stderr.write(e.strerror or str(e));sys.exit(1)
os.write(1,b"\0")
""" + UPLOAD + r"""
while True:
    d=s.recv(65536)
    if not d:
        break
    while d:
        d=d[os.write(1,d):]
"""


# argv: [tag, signal name, "escalate" or ""]. Every process of this uid that belongs to the run
# tagged <tag> gets the signal: its environment carries BRIDGE_RUN=<tag> (the run's tree: children
# inherit it, daemons that left its session too), or it is the login shell running tagged()'s text
# (an `export` does not change the shell's own /proc environ: its command line starts with the tag
# line instead); with "escalate", SIGKILL for any of them still there half a second later. Used
# over ssh because paramiko has no public way to send sshd's `signal` channel request, and sshd ends
# nothing of a non-PTY command when its channel closes. Reads /proc (Linux). Exit 0.
_SIGNAL_RUN = """\
import os, signal, sys, time
tag = sys.argv[1].encode()
mark, line = b'BRIDGE_RUN=' + tag, b'export BRIDGE_RUN=' + tag + b'\\n'
sig = getattr(signal, sys.argv[2])
def ours(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            if mark in f.read().split(b'\\0'):
                return True
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return any(arg.startswith(line) for arg in f.read().split(b'\\0'))
    except OSError:
        return False
def send(s):
    alive = False
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == os.getpid() or not ours(int(name)):
            continue
        try:
            with open('/proc/' + name + '/stat') as f:
                if f.read().rpartition(')')[2].split()[0] == 'Z':
                    continue
            os.kill(int(name), s)
            alive = True
        except OSError:
            pass
    return alive
if send(sig) and sys.argv[3]:
    end = time.monotonic() + 0.5
    while time.monotonic() < end and send(0):
        time.sleep(0.02)
    send(signal.SIGKILL)
"""


def tagged(script: str, tag: str, timeout: float | None = None) -> str:
    """sh text for the login shell, marked as the run `tag` for signal_argv.

    Without a timeout the script runs in the login shell itself, as ssh would run it (a bash-only
    script still works where the login shell is bash): the tag line before it exports BRIDGE_RUN to
    its children, and `exit $?` on a line of its own after it (a script ending in a `# comment`
    still ends) keeps the shell their parent, so a child that signal N kills reads 128+N. A signal
    that kills the login shell itself reads 255 (sshd's `exit-signal`, which paramiko drops). With a
    `timeout`, the timeout wrapper runs it under /bin/sh, as it always has, tagged through its env.
    """
    if timeout and timeout > 0:
        return shlex.join(timeout_argv(script, timeout, tag=tag)) + "; exit $?"
    return f"export BRIDGE_RUN={tag}\n{script}\nexit $?"


def signal_argv(tag: str, name: str, escalate: bool, python: str = "python3") -> list[str]:
    """argv that sends signal `name` (SIGTERM...) to the tree of the run tagged `tag` (tagged(), or
    BRIDGE_RUN in a local run's environment); `python`: the server's python3, or ours here."""
    return [python, "-I", "-S", "-c", _SIGNAL_RUN, tag, name, "escalate" if escalate else ""]


def timed_script(argv: Sequence[str]) -> str | None:
    """The sh script a timeout_argv() argv runs, None for any other argv: what a forced command (bridge
    guard) checks, since to a shell parser the wrapper is python3 and the script one of its arguments."""
    if len(argv) == 6 and list(argv[1:3]) == ["-c", _TIMEOUT_WRAPPER]:
        return argv[4]
    return None


def timeout_argv(script: str, timeout: float, python: str = "python3", tag: str = "") -> list[str]:
    """argv that runs sh `script` under the timeout wrapper (`python`: the server's python3, or ours
    here), the script tagged BRIDGE_RUN=`tag` when there is one."""
    return [python, "-c", _TIMEOUT_WRAPPER, f"{timeout:g}", script, tag]

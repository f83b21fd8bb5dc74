"""Python sent as text to run on a server (stdlib only): the one way a run ends at its timeout, on a
server and here alike, and the stdin-to-socket half the inline relays share."""
from __future__ import annotations

import shlex

# argv: [seconds, sh script].
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
t, script = float(sys.argv[1]), sys.argv[2]
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execv('/bin/sh', ['/bin/sh', '-c', script])
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
# relays run as `python -c` text (runners/ssh.py's unix pipe, sync/gitlink.py's git relay) that
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


def with_timeout(script: str, timeout: float | None) -> str:
    """Wrap sh `script` so the server ends its whole process tree at `timeout` seconds (none: unchanged)."""
    if not timeout or timeout <= 0:
        return script
    return shlex.join(timeout_argv(script, timeout))


def timeout_argv(script: str, timeout: float, python: str = "python3") -> list[str]:
    """argv that runs sh `script` under the timeout wrapper (`python`: the server's python3, or ours here)."""
    return [python, "-c", _TIMEOUT_WRAPPER, f"{timeout:g}", script]

"""Foundation bench: CLI start-up vs the bare interpreter, and `bridge test` vs `ssh host true`."""
from __future__ import annotations

from common import BRIDGE, PYTHON, BenchEnv, command, median_ms, print_table


def main() -> None:
    bench = BenchEnv()
    try:
        server = bench.sshd()
        ws = bench.dir / "ws"
        ws.mkdir()
        (ws / "bridge.yaml").write_text(f"workspace: bench\nremotes:\n  h: {server.url('/tmp')}\n")
        env = bench.env
        rows = [
            ("bridge --help", median_ms(command([*BRIDGE, "--help"], env=env)),
             "python -c pass", median_ms(command([PYTHON, "-c", "pass"], env=env))),
            ("bridge test h (cold, all checks)", median_ms(command([*BRIDGE, "test", "h"], env=env, cwd=ws)),
             "ssh -o BatchMode=yes h true (cold)", median_ms(command(bench.ssh_argv(server, "true"), env=env))),
        ]
        print_table("Foundation: start-up and `bridge test`", rows)
    finally:
        bench.close()


if __name__ == "__main__":
    main()

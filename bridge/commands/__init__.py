"""The Typer commands. What several of them share is said once here."""

# --forks: exec (and --sudo), test. The range is limits.RANGES["exec.forks"].
FORKS_HELP = "Hosts at a time (default 32)."

"""bridge: push, run and reach work on your servers safely. Kept import-free so the CLI starts fast."""

__version__ = "0.1.0"

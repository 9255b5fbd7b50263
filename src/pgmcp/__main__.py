"""``python -m pgmcp`` is ``pgmcp serve``."""

from pgmcp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

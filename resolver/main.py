"""The `nestguard` console script (pyproject.toml) and `python -m resolver.main`: the entry
point only. The subcommands are in resolver/cli.py."""

from __future__ import annotations

import sys

from resolver import cli


def main() -> None:
    sys.exit(cli.main())


if __name__ == "__main__":
    main()

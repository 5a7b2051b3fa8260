"""`python -m bot [serve | generate ... | check]` (also installed as the `imagine` command)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bot.config import SettingError

USAGE = """usage: python -m bot [serve | generate [options] PROMPT | check]

  serve      run the Slack app (default): Socket Mode when SLACK_APP_TOKEN is set,
             otherwise HTTP on $PORT
  generate   draw a picture without Slack; --help for the options
  check      say, for each provider and the store, whether it is configured and reachable
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "serve"
    try:
        if command == "generate":
            from bot.cli import main_generate

            return main_generate(args)
        if command == "check":
            from bot.cli import main_check

            return main_check()
        if command == "serve":
            from bot.slack.server import main_serve

            return main_serve()
    except SettingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(USAGE, file=sys.stderr if command not in {"-h", "--help", "help"} else sys.stdout)
    return 0 if command in {"-h", "--help", "help"} else 2


if __name__ == "__main__":
    sys.exit(main())

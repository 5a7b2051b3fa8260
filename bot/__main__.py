"""`python -m bot [serve | worker | generate ... | compare ... | check]` (also `imagine`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bot.config import SettingError

USAGE = """usage: python -m bot [serve | worker | generate [options] PROMPT
                     | compare [options] PROMPT | check | audit [--since 30d]
                     [--format csv|json] | prune | forget-user USER_ID]

  serve      run the Slack app (default): Socket Mode when SLACK_APP_TOKEN is set,
             otherwise HTTP on $PORT; with REDIS_URL it only acknowledges and enqueues
  worker     run queued jobs (needs REDIS_URL); start as many as the load needs
  generate   draw a picture without Slack; --help for the options
  compare    draw a prompt with every configured provider, side by side
  check      say, for each provider, the store, the database, Slack and Redis (when set),
             whether it is configured and reachable
  audit      print one row per picture (CSV or JSON), prompts included: compliance reviews
  prune      delete pictures and blank prompts older than IMAGINE_RETENTION_DAYS
  forget-user  delete one person's pictures and blank their prompts
"""


GOVERNANCE = {"audit": "main_audit", "prune": "main_prune", "forget-user": "main_forget_user"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "serve"
    try:
        if command in {"generate", "compare"}:
            from bot import cli

            return cli.main_generate(args) if command == "generate" else cli.main_compare(args)
        if command == "check":
            from bot.cli import main_check

            return main_check()
        if command in GOVERNANCE:
            from bot import cli

            return getattr(cli, GOVERNANCE[command])(args)
        if command == "serve":
            from bot.server import main_serve

            return main_serve()
        if command == "worker":
            from bot.server import main_worker

            return main_worker()
    except SettingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(USAGE, file=sys.stderr if command not in {"-h", "--help", "help"} else sys.stdout)
    return 0 if command in {"-h", "--help", "help"} else 2


if __name__ == "__main__":
    sys.exit(main())

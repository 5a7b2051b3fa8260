"""`python -m bot generate | compare | check`: the workflows without Slack.

These are how an operator tries credentials and prompts before installing the Slack app. They
run the very workflows the Slack app runs (the same provider choice, pacing, history), with a
publisher that prints one line per fact and never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TextIO

from bot.config import Config
from bot.core.choice import ProviderChoice
from bot.core.jobs import CompareJob, GenerateJob, Job, LeaderboardJob, new_request_id
from bot.core.ports import ComparisonPost, ComposedComparison, Posted, Waiting
from bot.generation.service import GenerationService
from bot.generation.stores.directory import DirectoryImageStore
from bot.generation.types import (
    ASPECT_RATIOS,
    MAX_IMAGES,
    ImageRequest,
    ImagineError,
    clean_text,
)
from bot.startup import open_vote_store
from bot.votes.leaderboard import LeaderboardResult
from bot.wiring import build_choice, build_for_cli, build_service

_EMOJI = re.compile(r"^(:[\w+-]+:\s*)+")


class ConsolePublisher:
    """Prints what the Slack app would post; `status` is 1 once anything failed."""

    def __init__(self, out: TextIO = sys.stdout, admin_alerts=None) -> None:
        """`admin_alerts(admins, alert)`: how budget alerts reach the admins (Slack DMs when
        SLACK_BOT_TOKEN is set); without it they are printed."""
        self.out = out
        self.admin_alerts = admin_alerts
        self.status = 0
        self._lock = threading.Lock()

    def _print(self, *lines: str) -> None:
        with self._lock:
            for line in lines:
                print(line, file=self.out)

    def tell(self, job: Job, text: str) -> None:
        self.status = 1
        self._print(_EMOJI.sub("", text))

    def tell_error(self, job: Job, error: ImagineError) -> None:
        self.status = 1
        self._print(f"{error.provider + ': ' if error.provider else ''}{error.message}")

    def progress(self, job: Job, waiting: Waiting | None) -> None:
        if waiting is None:
            self._print("drawing now…")
        else:
            ahead = ", ".join(f"{p}: {n} ahead" for p, n in waiting.ahead.items())
            self._print(f"waiting for the providers' quotas ({ahead})…")

    shows_previews = False  # a terminal prints the finished pictures only

    def post_pictures(self, job: Job, result, seconds: float, replace=None) -> Posted:
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
        lines = [f"{result.provider} ({result.model}) {timing}"]
        if getattr(job, "why", None):
            lines.append(f"  chosen: {job.why}")
        if result.revised_prompt:
            lines.append(f"  revised prompt: {result.revised_prompt}")
        lines += [f"  note: {note}" for note in result.notes]
        lines += [f"  {image.url}" for image in result.images]
        self._print(*lines)
        return Posted(mode="console")

    def preview(self, job, provider, model, image, index, replace) -> Posted:
        return Posted(mode="console")

    def withdraw_preview(self, job, posted) -> None:
        pass  # the terminal shows no previews, so there is none to withdraw

    def picture(self, job: Job, ref: str) -> bytes | None:
        return None  # the command line keeps no pictures of its own

    def post_comparison(
        self, job: CompareJob, post: ComparisonPost, composed: ComposedComparison
    ) -> Posted:
        sides = ", ".join(f"{p} = {prov} ({model})" for p, (prov, model) in post.models.items())
        lines = [f"compare: {sides} · {post.seconds:.1f} s", f"  side by side: {post.pictures[0]}"]
        for position, urls in post.originals.items():
            lines += [f"  {position}: {url}" for url in urls]
        self._print(*lines)
        return Posted(mode="console")

    def open_voting(self, job: CompareJob, posted: Posted) -> None:
        pass  # nobody votes on a terminal

    def close_voting(self, job: CompareJob, posted: Posted, post: ComparisonPost) -> None:
        pass  # nothing was open for voting

    def show_leaderboard(
        self, job: LeaderboardJob, result: LeaderboardResult, chart, chart_url
    ) -> None:
        self._print(*(f"{r.model}  {r.rating:.0f}  ({r.votes} votes)" for r in result.rows))

    def refuse(self, job: Job, refusal) -> None:
        self.status = 1
        self._print(refusal.plain())

    def alert_admins(self, admins: frozenset[str], alert) -> None:
        self._print(f"budget alert: {alert.plain()}")
        if self.admin_alerts is not None:
            self.admin_alerts(admins, alert)

    def show_usage(self, job: Job, report) -> None:
        self._print(f"today: {report.today[0]} pictures, ${report.today[1]:.2f}")


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="+", help="what to draw")
    parser.add_argument("--n", type=int, default=1, help=f"images per provider, 1-{MAX_IMAGES}")
    parser.add_argument("--aspect", "--ar", default="1:1", choices=ASPECT_RATIOS)
    parser.add_argument("--no", dest="negative_prompt", help="what to leave out")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--quality", help="e.g. standard|hd (DALL-E 3), low|medium|high|auto")
    parser.add_argument("--style", help="vivid|natural (DALL-E 3)")
    parser.add_argument("--out", help="write the images into this directory instead of GCS")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_request_arguments(parser)
    parser.add_argument(
        "--provider",
        "-p",
        action="append",
        help="provider name or alias; repeat for several (default: as `/imagine <prompt>` "
        "chooses: IMAGINE_DEFAULT_PROVIDER, else a comparison when two are configured)",
    )


def run_job(args: argparse.Namespace, config: Config, *, compare: bool, out: TextIO) -> int:
    """Build the job as the Slack app would, run it in the foreground, print the outcome."""
    request = ImageRequest(  # cleaned as `/imagine` text is: no control characters
        prompt=clean_text(" ".join(args.prompt)),
        n=args.n,
        aspect_ratio=args.aspect,
        negative_prompt=clean_text(args.negative_prompt) if args.negative_prompt else None,
        seed=args.seed,
        quality=args.quality,
        style=args.style,
    )
    service = build_service(config, store=DirectoryImageStore(args.out) if args.out else "default")
    choice = ProviderChoice(service, config.default_provider)
    named = getattr(args, "provider", None)
    why = None
    try:  # what to draw, and with what, comes first: nothing is touched before it is valid
        if named:
            providers = tuple(choice.choose(word)[0] for word in named)
        elif compare:
            providers = choice.choose(compare=True)
        else:  # as `/imagine <prompt>` chooses: the person's default, the votes
            providers, why = _plain_prompt_choice(config, service)
        service.validate(request, providers)
    except ImagineError as err:
        print(f"error: {err.message}", file=out)
        return 2
    if service.store is None:
        print(
            "error: GCS_BUCKET is not set: set it, or pass --out DIR to save the images.", file=out
        )
        return 2
    publisher = ConsolePublisher(out, _slack_alerts(config))
    services = build_for_cli(config, publisher, service)
    now = time.time()
    kind = CompareJob if compare or (not named and len(providers) > 1) else GenerateJob
    job = kind(
        key=f"cli:{uuid.uuid4().hex}",
        request_id=new_request_id(),
        team_id="cli",
        channel_id="cli",
        user_id=_user(),
        created_at=now,
        deadline=now + config.jobs.deadline,
        providers=providers,
        request=request,
        **({"why": why} if kind is GenerateJob else {}),
    )
    try:
        services.workflows.run(job)  # type: ignore[union-attr]
    finally:
        services.close()
    return publisher.status


def _slack_alerts(config: Config):
    """Budget alerts from the command line go to the admins as the app sends them: DMs."""
    if not config.slack.bot_token or not config.admins:
        return None
    from bot.slack.app import build_web_client
    from bot.slack.publisher import SlackPublisher

    return SlackPublisher(build_web_client(config), config.voting).alert_admins


def run_check(config: Config, service: GenerationService, out: TextIO = sys.stdout) -> int:
    """One line per provider, the store, the database, Slack and (when set) Redis: configured
    or not, and a live call.

    Exits 1 when no provider is configured or a live call fails, so scripts can rely on it.
    Slack not being configured is no failure: `generate` and `compare` run without it.
    """
    from bot.checks import check_database, check_redis, check_slack

    status = 0 if service.configured_providers() else 1
    width = max(len(name) for name in [*service.providers, "store"])
    for name, provider in service.providers.items():
        missing = provider.missing_settings()
        if missing:
            print(f"{name:<{width}}  not configured: set {', '.join(missing)}", file=out)
            continue
        status |= _live(name, width, provider.check, out)
    if service.store is None:
        print(f"{'store':<{width}}  no GCS_BUCKET: Slack uploads the images itself", file=out)
    else:
        status |= _live("store", width, service.store.check, out)
    status |= _live("db", width, lambda: check_database(config), out)
    if config.slack.bot_token:
        status |= _live("slack", width, lambda: check_slack(config), out)
    else:
        print(f"{'slack':<{width}}  not configured: set SLACK_BOT_TOKEN to serve", file=out)
    if config.jobs.redis_url:
        status |= _live("redis", width, lambda: check_redis(config), out)
    return status


def _live(name: str, width: int, call, out: TextIO) -> int:
    from bot.checks import CheckFailed

    try:
        detail = call()
    except ImagineError as err:
        print(f"{name:<{width}}  configured, but the check failed: {err.message}", file=out)
        return 1
    except CheckFailed as err:
        print(f"{name:<{width}}  configured, but the check failed: {err}", file=out)
        return 1
    except Exception as err:  # the operator needs one line, not a traceback
        print(f"{name:<{width}}  configured, but the check failed: {type(err).__name__}", file=out)
        return 1
    print(f"{name:<{width}}  ok: {detail}", file=out)
    return 0


def _plain_prompt_choice(
    config: Config, service: GenerationService
) -> tuple[tuple[str, ...], str | None]:
    """The Slack app's choice for a prompt that names no provider (`bot.core.choice`)."""
    store = open_vote_store(config)
    try:
        chosen = build_choice(config, service, store).for_prompt(_user())
    finally:
        store.close()
    return chosen.providers, chosen.why


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "cli"


def main_generate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot generate")
    add_generate_arguments(parser)
    args = parser.parse_args(argv)
    return run_job(args, Config.from_env(), compare=False, out=sys.stdout)


def main_compare(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot compare",
        description="Draw the prompt with every configured provider and put them side by side.",
    )
    add_request_arguments(parser)
    args = parser.parse_args(argv)
    return run_job(args, Config.from_env(), compare=True, out=sys.stdout)


def main_check() -> int:
    config = Config.from_env()
    return run_check(config, build_service(config))


# -- governance: the audit export and retention ------------------------------------------------
_SINCE = re.compile(r"^(\d+)([hdw])$")


def _since(text: str) -> int:
    """`30d`, `12h`, `4w` -> seconds (argparse's type: a bad one is a usage error)."""
    match = _SINCE.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError("give a period like 30d, 12h or 4w")
    return int(match.group(1)) * {"h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]


def main_audit(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """One row per picture (time, team, channel, user, provider, model, prompt, revised
    prompt, cost, outcome, message link, image object): for compliance reviews."""
    import csv
    import json
    from datetime import UTC, datetime, timedelta

    from bot.startup import open_vote_store
    from bot.votes.retention import AUDIT_COLUMNS, audit_rows

    parser = argparse.ArgumentParser(prog="python -m bot audit", description=main_audit.__doc__)
    parser.add_argument("--since", type=_since, default=30 * 86400, help="e.g. 30d (default)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv")
    args = parser.parse_args(argv)
    store = open_vote_store(Config.from_env())
    try:
        rows = audit_rows(store, datetime.now(UTC) - timedelta(seconds=args.since))
        if args.format == "json":
            json.dump(list(rows), out, ensure_ascii=False, indent=1)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        store.close()
    return 0


def _forgetting(config: Config):
    """The vote store and what deletes a picture: the bucket (GCS_BUCKET), or nothing."""
    from bot.startup import open_vote_store

    store = open_vote_store(config)
    if not config.store.gcs_bucket:
        return store, None
    from bot.generation.stores.gcs import GcsImageStore

    return store, GcsImageStore.from_config(config).delete


def _said(done, what: str) -> str:
    line = (
        f"{what}: {done.pictures_deleted} pictures deleted from the bucket, "
        f"{done.prompts_blanked} prompts blanked."
    )
    if done.pictures_failed:
        line += f" {done.pictures_failed} pictures could not be deleted; run it again."
    return line


def main_prune(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    from datetime import UTC, datetime, timedelta

    from bot.votes.retention import prune

    argparse.ArgumentParser(
        prog="python -m bot prune",
        description="Delete pictures and blank prompts older than IMAGINE_RETENTION_DAYS.",
    ).parse_args(argv)
    config = Config.from_env()
    days = config.governance.retention_days
    if days is None:
        print("error: IMAGINE_RETENTION_DAYS is not set: nothing is pruned.", file=out)
        return 2
    store, delete = _forgetting(config)
    try:
        done = prune(store, datetime.now(UTC) - timedelta(days=days), delete)
    finally:
        store.close()
    print(_said(done, f"Older than {days} days"), file=out)
    return 1 if done.pictures_failed else 0


def main_forget_user(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    from bot.config import USER_ID
    from bot.votes.retention import forget_user

    parser = argparse.ArgumentParser(
        prog="python -m bot forget-user",
        description="Delete one person's pictures and blank their prompts, on request.",
    )
    parser.add_argument("user_id", help="the Slack user id, like U012AB3CD")
    args = parser.parse_args(argv)
    if not USER_ID.match(args.user_id):
        print(f"error: {args.user_id!r} is not a Slack user id (like U012AB3CD).", file=out)
        return 2
    store, delete = _forgetting(Config.from_env())
    try:
        done = forget_user(store, args.user_id, delete)
    finally:
        store.close()
    print(_said(done, f"For {args.user_id}"), file=out)
    return 1 if done.pictures_failed else 0

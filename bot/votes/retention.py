"""The history read for compliance (the audit export) and forgotten on schedule or on request.

Prompts leave the database only through `audit_rows`. `prune` (older than the retention) and
`forget_user` (one person's) delete the pictures from the bucket, by the object names the
database keeps (a single picture's `image_refs`, a comparison's `details`), and blank the
prompts; votes, costs and counts stay, so the leaderboard and the budget still add up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from bot.votes.db import VoteStore, _utc
from bot.votes.schema import COMPARISONS, GENERATIONS, object_ref

AUDIT_COLUMNS = (
    "time",
    "team",
    "channel",
    "user",
    "provider",
    "model",
    "prompt",
    "revised_prompt",
    "cost_usd",
    "outcome",
    "message_link",
    "image",
)
SLACK_ARCHIVES = "https://slack.com/archives"  # Slack sends a signed-in person on to the message
Deleter = Callable[[str], bool]  # a picture's ref -> deleted (False: it was gone already)


def message_link(channel_id: str, message_ts: str | None) -> str:
    """A link to the post, as Slack's own permalinks are made (`p` + the ts without its dot)."""
    if not message_ts or channel_id[:1] not in ("C", "G", "D"):
        return ""
    return f"{SLACK_ARCHIVES}/{channel_id}/p{message_ts.replace('.', '')}"


def _refs(row: Any) -> list[str]:
    """Where the row's pictures are kept: object names; rows older than the column fall back
    to their URLs (kept without query strings), turned into object names where they are."""
    refs = json.loads(row.image_refs or "[]")
    if refs:
        return refs
    return [object_ref(url) for url in json.loads(row.image_urls or "[]")]


def audit_rows(store: VoteStore, since: datetime) -> Iterator[dict[str, Any]]:
    """One row per picture since `since` (a request that drew nothing: one row, no image);
    a result's cost is shared evenly among its pictures."""
    with store.reading() as conn:
        rows = conn.execute(
            select(GENERATIONS)
            .where(GENERATIONS.c.created_at >= since)
            .order_by(GENERATIONS.c.created_at, GENERATIONS.c.id)
        ).all()
    for row in rows:
        refs = _refs(row)
        count = max(len(refs), row.pictures or 0, 1)
        images = refs + [""] * (count - len(refs))
        cost = None if row.cost_usd is None else round(row.cost_usd / count, 6)
        for image in images:
            yield {
                "time": _utc(row.created_at).isoformat(),
                "team": row.team_id or "",
                "channel": row.channel_id,
                "user": row.user_id,
                "provider": row.provider,
                "model": row.model,
                "prompt": row.prompt,
                "revised_prompt": row.revised_prompt or "",
                "cost_usd": cost,
                "outcome": row.outcome,
                "message_link": message_link(row.channel_id, row.message_ts),
                "image": image,
            }


@dataclass
class Forgotten:
    """What `prune` or `forget_user` did."""

    pictures_deleted: int = 0
    prompts_blanked: int = 0
    pictures_failed: int = 0  # still in the bucket (it could not be reached): run again


def _delete_all(refs: list[str], delete: Deleter | None, done: Forgotten) -> list[str]:
    """Delete each picture; the refs still kept (not deleted: no store, or it failed)."""
    kept = []
    for ref in refs:
        if not ref.startswith("gs://") and not ref.startswith("file://"):
            continue  # a provider's URL or nothing: nothing of ours to delete
        if delete is None:
            kept.append(ref)
            continue
        try:
            if delete(ref):
                done.pictures_deleted += 1
        except Exception:
            done.pictures_failed += 1
            kept.append(ref)
    return kept


def _forget_generations(store: VoteStore, where: Any, delete: Deleter | None, done: Forgotten):
    with store.reading() as conn:
        rows = conn.execute(
            select(GENERATIONS).where(
                where,
                or_(
                    GENERATIONS.c.prompt != "",
                    GENERATIONS.c.image_urls != "[]",
                    GENERATIONS.c.image_refs.is_(None),
                    GENERATIONS.c.image_refs != "[]",
                ),
            )
        ).all()
    for row in rows:
        kept = _delete_all(_refs(row), delete, done)
        options = json.loads(row.options or "{}")
        options.pop("negative_prompt", None)  # typed by the person, like the prompt
        with store.writing() as conn:
            conn.execute(
                update(GENERATIONS)
                .where(GENERATIONS.c.id == row.id)
                .values(
                    prompt="",
                    revised_prompt=None,
                    options=json.dumps(options, sort_keys=True),
                    image_urls="[]",
                    image_refs=json.dumps(kept),
                )
            )
        done.prompts_blanked += 1 if row.prompt else 0


def _forget_comparisons(store: VoteStore, where: Any, delete: Deleter | None, done: Forgotten):
    with store.reading() as conn:
        rows = conn.execute(
            select(COMPARISONS.c.id, COMPARISONS.c.prompt, COMPARISONS.c.details).where(
                where, COMPARISONS.c.prompt != ""
            )
        ).all()
    for row in rows:
        details = json.loads(row.details or "{}")
        post = details.get("post") if isinstance(details, dict) else None
        if isinstance(post, dict):
            refs = list(post.get("pictures") or [])
            for urls in (post.get("originals") or {}).values():
                refs.extend(urls)
            kept = _delete_all(refs, delete, done)
            post["prompt"] = ""
            post["pictures"] = [r for r in post.get("pictures") or [] if r in kept]
            post["originals"] = {
                side: [r for r in urls if r in kept]
                for side, urls in (post.get("originals") or {}).items()
            }
        with store.writing() as conn:
            conn.execute(
                update(COMPARISONS)
                .where(COMPARISONS.c.id == row.id)
                .values(prompt="", details=json.dumps(details))
            )
        done.prompts_blanked += 1


def prune(store: VoteStore, before: datetime, delete: Deleter | None) -> Forgotten:
    """Pictures and prompts of everything drawn before `before`."""
    done = Forgotten()
    _forget_generations(store, GENERATIONS.c.created_at < before, delete, done)
    _forget_comparisons(store, COMPARISONS.c.created_at < before, delete, done)
    return done


def forget_user(store: VoteStore, user_id: str, delete: Deleter | None) -> Forgotten:
    """Every prompt and picture of one person (their comparisons too)."""
    done = Forgotten()
    _forget_generations(store, GENERATIONS.c.user_id == user_id, delete, done)
    _forget_comparisons(store, COMPARISONS.c.requester_id == user_id, delete, done)
    return done

"""Results and errors -> Slack messages (Block Kit). Pure functions, table-tested.

Limits honoured (WIRE.md): 50 blocks, section text 3000 chars, context 10 elements,
image_url 3000 chars, alt_text 2000 chars; always a top-level fallback `text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.generation.types import (
    ContentPolicyError,
    ImageRequest,
    ImagineError,
    ProviderResult,
    RateLimitError,
)
from bot.slack.command import LEADERBOARD_HELP, OPTION_HELP

Block = dict[str, Any]
SECTION_LIMIT = 3000
ALT_TEXT_LIMIT = 2000
URL_LIMIT = 3000


def truncate(text: str, limit: int) -> str:
    """Cut visibly: a reader must see that the text goes on."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def escape(text: str) -> str:
    """Escape what Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def context_block(*texts: str) -> Block:
    elements = [{"type": "mrkdwn", "text": truncate(t, SECTION_LIMIT)} for t in texts if t][:10]
    return {"type": "context", "elements": elements}


def help_message(providers: dict[str, tuple[str, list[str]]], default: str | None) -> dict:
    """Usage, options, and which providers are configured here.

    `providers` maps name -> (aliases joined, missing settings).
    """
    lines = []
    if default == "compare":
        lines.append("• `/imagine <prompt>` compares every configured provider, blind (default)")
    for name, (aliases, missing) in providers.items():
        state = "ready" if not missing else f"not configured (needs {', '.join(missing)})"
        mark = " (default)" if name == default else ""
        lines.append(f"• `{name}`{mark}{f' — also {aliases}' if aliases else ''}: {state}")
    text = (
        "*Imagine draws pictures from your words.*\n"
        "`/imagine <provider> <prompt> [options]` or `/imagine <prompt>` for the default.\n"
        "Example: `/imagine imagen a lighthouse in a storm, oil painting --ar 16:9`\n"
        "`/imagine compare <prompt>` draws it with every provider, side by side and blind: "
        "react to vote. `/imagine leaderboard` shows which model the team prefers "
        f"({LEADERBOARD_HELP}).\n\n"
        f"*Options* (at the end): {OPTION_HELP}\n\n*Providers here:*\n" + "\n".join(lines)
    )
    return {"text": text, "blocks": [_section(text)]}


def working_text(models: dict[str, str], request: ImageRequest) -> str:
    """The ephemeral ack: what is being drawn, by whom (or, for a comparison, by how many)."""
    prompt = escape(truncate(request.prompt, 200))
    if len(models) > 1:
        return (
            f":art: Comparing {len(models)} models on “{prompt}”. The pictures will appear "
            "side by side, blind: react to vote for the one you prefer."
        )
    [(provider, model)] = models.items()
    n = f"{request.n} pictures" if request.n > 1 else "a picture"
    return f":art: Drawing {n} of “{prompt}” with {provider} (`{model}`)…"


def result_message(
    result: ProviderResult, request: ImageRequest, user_id: str, seconds: float
) -> dict:
    """The channel message for one provider's pictures (URLs already stored)."""
    prompt = escape(request.prompt)
    blocks: list[Block] = [_section(f"*{truncate(prompt, SECTION_LIMIT - 10)}*")]
    for i, image in enumerate(result.images[:4], start=1):
        if image.url is None or len(image.url) > URL_LIMIT:
            continue
        blocks.append(
            {
                "type": "image",
                "image_url": image.url,
                "alt_text": truncate(f"Picture {i}: {request.prompt}", ALT_TEXT_LIMIT),
            }
        )
    blocks.append(context_block(byline(result, user_id, seconds), RATE_HINT))
    if result.revised_prompt and result.revised_prompt.strip() != request.prompt.strip():
        blocks.append(context_block(f"*Revised prompt:* {escape(result.revised_prompt)}"))
    if result.notes:
        blocks.append(context_block(*(f":warning: {escape(note)}" for note in result.notes)))
    text = f"<@{user_id}>'s picture: {truncate(request.prompt, 150)} ({result.provider})"
    return {"text": text, "blocks": blocks}


RATE_HINT = "React :+1: or :-1: to rate this model."


def byline(result: ProviderResult, user_id: str, seconds: float) -> str:
    return f"{result.provider} · `{result.model}` · asked by <@{user_id}> · {seconds:.1f} s"


def upload_comment(
    result: ProviderResult, request: ImageRequest, user_id: str, seconds: float
) -> str:
    """The message that goes with images uploaded into Slack (no blocks there)."""
    lines = [
        f"*{escape(truncate(request.prompt, 2500))}*",
        f"{byline(result, user_id, seconds)} · {RATE_HINT}",
    ]
    if result.revised_prompt and result.revised_prompt.strip() != request.prompt.strip():
        lines.append(f"_Revised prompt:_ {escape(truncate(result.revised_prompt, 1000))}")
    lines.extend(f":warning: {escape(note)}" for note in result.notes)
    return "\n".join(lines)


def error_text(error: ImagineError) -> str:
    """One short sentence saying what happened and what to do."""
    who = f"{error.provider}: " if error.provider else ""
    if isinstance(error, ContentPolicyError):
        reason = error.reason or ""
        why = f" Reason: {truncate(reason, 300)}" if reason and reason not in error.message else ""
        return f":no_entry: {who}{error.message}{why}"
    if isinstance(error, RateLimitError):
        return f":hourglass: {who}{error.message}"
    return f":warning: {who}{error.message}"


CANCEL_ACTION = "imagine_cancel"


def waiting_note(prompt: str, ahead: dict[str, int], job_key: str) -> dict:
    """The private note while a picture waits for quota, with a Cancel button."""
    waits = " · ".join(
        f"{label}'s quota, {n} ahead of you" if n else f"{label}'s quota, next in line"
        for label, n in ahead.items()
    )
    text = f":hourglass_flowing_sand: Waiting for {waits}. “{escape(truncate(prompt, 200))}”"
    return {
        "text": text,
        "blocks": [
            _section(text),
            {
                "type": "actions",
                "block_id": "imagine_waiting",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CANCEL_ACTION,
                        "text": {"type": "plain_text", "text": "Cancel"},
                        "value": job_key,
                    }
                ],
            },
        ],
    }


def drawing_note(prompt: str) -> dict:
    text = f":art: Drawing “{escape(truncate(prompt, 200))}” now…"
    return {"text": text, "blocks": [_section(text)]}


NOT_IN_CHANNEL = (
    "I'm not a member of this conversation, so only you can see this. "
    "Invite me with `/invite @Imagine` to post pictures here."
)


# -- comparisons ----------------------------------------------------------------------------
REVEAL_ACTION = "imagine_reveal"
CHOICE_LABELS = {"A": "A is better", "B": "B is better", "tie": "a tie", "both_bad": "both bad"}


@dataclass(frozen=True)
class ComparisonView:
    """What a comparison post shows; kept with the comparison so the reveal can redraw it.

    `originals` and `models` are keyed by position ("A", "B"); `models` gives (provider,
    model); `emoji` maps a choice ("A", "B", "tie", "both_bad") to its reaction name;
    `pictures` are the composed pictures' URLs (empty when uploaded into Slack).
    """

    prompt: str
    pictures: list[str]
    originals: dict[str, list[str]]
    models: dict[str, tuple[str, str]]
    emoji: dict[str, str]
    requester: str
    seconds: float
    reveal_after: int

    @classmethod
    def of(cls, post: Any, emoji: dict[str, str]) -> ComparisonView:
        """The view of a core `ComparisonPost` (or its stored dict) with the voting emoji."""
        fields = post if isinstance(post, dict) else vars(post)
        names = ("prompt", "pictures", "originals", "models", "requester", "seconds")
        return cls(
            **{name: fields[name] for name in names},
            emoji=emoji,
            reveal_after=fields["reveal_after"],
        )

    def how_to_vote(self) -> str:
        how = " · ".join(f":{self.emoji[c]}: {label}" for c, label in CHOICE_LABELS.items())
        return f"React to vote: {how}. One vote per person; a new reaction replaces it."

    def byline(self) -> str:
        return f"blind comparison · asked by <@{self.requester}> · {self.seconds:.1f} s"


def reveal_button(value: str) -> Block:
    return {
        "type": "actions",
        "block_id": "imagine_compare",
        "elements": [
            {
                "type": "button",
                "action_id": REVEAL_ACTION,
                "text": {"type": "plain_text", "text": "Reveal the models"},
                "value": value,
            }
        ],
    }


def compare_message(
    view: ComparisonView,
    revealed: bool = False,
    tally: dict[str, int] | None = None,
    votable: bool = True,
) -> dict:
    """The blind side-by-side post: the composed picture, links to the originals, how to
    vote and a Reveal button; once revealed, which model drew which side. Not `votable`
    (it could not be recorded): the models named, and no way to vote."""
    blocks: list[Block] = [_section(f"*Which picture is better?*\n“{escape(view.prompt)}”")]
    for i, url in enumerate(view.pictures, start=1):
        image: Block = {
            "type": "image",
            "image_url": url,
            "alt_text": truncate(
                f"Pictures side by side, A on the left and B on the right: {view.prompt}",
                ALT_TEXT_LIMIT,
            ),
        }
        if len(view.pictures) > 1:
            image["title"] = {"type": "plain_text", "text": f"Pair {i}"}
        blocks.append(image)
    links = [
        f"Full size {position}: "
        + " ".join(f"<{url}|{n}>" for n, url in enumerate(urls, start=1) if len(url) < 1400)
        for position, urls in view.originals.items()
    ]
    blocks.append(context_block(*links))
    if revealed:
        blocks.append(context_block(reveal_text(view.models, tally or {})))
    elif not votable:
        blocks.append(context_block(unvotable_text(view.models)))
    else:
        blocks.append(
            context_block(
                f"{view.how_to_vote()} The models stay hidden until {view.reveal_after} votes "
                "or the requester reveals them."
            )
        )
        blocks.append(reveal_button("reveal"))
    blocks.append(context_block(view.byline()))
    text = f"<@{view.requester}> compares models: {truncate(view.prompt, 150)}."
    return {"text": text + (" React to vote." if votable else ""), "blocks": blocks}


def _sides(models: dict[str, tuple[str, str]]) -> str:
    return " · ".join(
        f"{position} was *{provider}* (`{model}`)" for position, (provider, model) in models.items()
    )


def reveal_text(models: dict[str, tuple[str, str]], tally: dict[str, int]) -> str:
    votes = " · ".join(f"{CHOICE_LABELS[c]}: {tally.get(c, 0)}" for c in CHOICE_LABELS)
    return f"{_sides(models)}\nVotes so far: {votes}"


NOT_VOTABLE = "Voting is off for this comparison: I could not record it, so votes would be lost."


def unvotable_text(models: dict[str, tuple[str, str]]) -> str:
    return f"{_sides(models)}\n{NOT_VOTABLE}"


def compare_comment(view: ComparisonView) -> str:
    """The comparison as a file comment, when the pictures are uploaded into Slack."""
    return (
        f"*Which picture is better?* “{escape(truncate(view.prompt, 2000))}”\n"
        f"{view.how_to_vote()} The models stay hidden until {view.reveal_after} votes or "
        f"<@{view.requester}> reveals them.\n{view.byline()}"
    )


def reveal_prompt(channel: str, ts: str) -> dict:
    """The requester's private Reveal button, for comparisons posted as file uploads."""
    text = "Only you can see this: reveal which model drew which picture whenever you like."
    return {"text": text, "blocks": [_section(text), reveal_button(f"{channel}|{ts}")]}


# -- leaderboard ----------------------------------------------------------------------------
def leaderboard_message(result, chart_url: str | None, min_votes: int, filters: str) -> dict:
    """Ratings as a monospace table (and the chart when it has a URL), thumbs apart."""
    title = f"Imagine leaderboard{f' · {filters}' if filters else ''}"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, 150)}}
    ]
    if result.rows:
        width = max(len(r.model) for r in result.rows)
        lines = [f"{'model':<{width}}  rating  95% interval   W-L-T-bad   votes  win rate"]
        for r in result.rows:
            rate = f"{r.win_rate:.0%}" if r.win_rate is not None else "–"
            mark = " *" if r.provisional else ""
            wlt = f"{r.wins}-{r.losses}-{r.ties}-{r.both_bad}"
            lines.append(
                f"{r.model:<{width}}  {r.rating:6.0f}  [{r.ci_low:4.0f}, {r.ci_high:4.0f}]"
                f"  {wlt:>10}  {r.votes:6d}  {rate:>8}{mark}"
            )
        blocks.append(_section("```" + truncate("\n".join(lines), SECTION_LIMIT - 6) + "```"))
        if chart_url:
            blocks.append(
                {"type": "image", "image_url": chart_url, "alt_text": "Ratings with 95% intervals"}
            )
    else:
        blocks.append(_section("No head-to-head votes yet: `/imagine compare <prompt>` and react."))
    if result.thumbs:
        thumbs = " · ".join(f"`{t.model}` :+1: {t.up} :-1: {t.down}" for t in result.thumbs)
        blocks.append(context_block(f"*Single pictures:* {thumbs}"))
    blocks.append(
        context_block(
            "Bradley-Terry ratings (400-point scale, mean 1000) with 95% bootstrap intervals; "
            f"ties and both-bad count half a win. * provisional: fewer than {min_votes} votes. "
            f"{result.head_to_head_votes} head-to-head votes, {result.thumb_votes} ratings; "
            f"computed in {result.seconds:.2f} s."
        )
    )
    text = f"{title}: " + (
        ", ".join(f"{r.model} {r.rating:.0f}" for r in result.rows) or "no votes yet"
    )
    return {"text": text, "blocks": blocks}

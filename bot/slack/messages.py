"""Results and errors -> Slack messages (Block Kit). Pure functions, table-tested.

Everything this app says in Slack is built here, and nothing a person typed can become a
mention, a special mention (`<!channel>`) or a link: text is escaped by default (`&`, `<`, `>`
as entities, Slack's "Formatting text" rules). Our own markup (mentions of the requester,
links to the pictures, bold) is `Mrkdwn`, made only by `md`, `mention` and `link`, whose
arguments are escaped in turn; every block helper escapes a plain `str` it is given, so a
builder that forgets to escape still sends escaped text.

Limits honoured (Slack's Block Kit reference): 50 blocks, section and context texts 3000
chars, context 10 elements, header 150, image_url 3000, image alt_text and title 2000, button
text 75; an upload's alt_txt 1000. Texts are cut visibly and never inside an entity or a link.
Always a top-level fallback `text`.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from bot.generation.types import (
    ContentPolicyError,
    ImageRequest,
    ImagineError,
    ProviderResult,
    RateLimitError,
)
from bot.slack.command import LEADERBOARD_HELP, OPTION_HELP, UnknownProviderError

Block = dict[str, Any]
SECTION_LIMIT = 3000  # a section's text, and any text object
ALT_TEXT_LIMIT = 2000  # an image block's alt_text and title
URL_LIMIT = 3000  # an image block's image_url
HEADER_LIMIT = 150
CONTEXT_ELEMENTS = 10
FALLBACK_LIMIT = 3000  # the top-level `text`: a notification, not the message (Slack: 40,000)
UPLOAD_ALT_LIMIT = 1000  # files.getUploadURLExternal `alt_txt` (alt_txt_too_large beyond)
UPLOAD_TITLE_LIMIT = 200  # ours: a file's title is its name in the channel


class Mrkdwn(str):
    """Text ready for a Slack text field: what people typed escaped, our own markup intact.

    Made only by `escape`, `md`, `mention`, `link` and `fit`. Operations on it (`+`, slicing,
    f-strings) give a plain `str` again, which the helpers below escape: compose with `md`."""

    __slots__ = ()


def escape(text: str) -> Mrkdwn:
    """`&`, `<`, `>` as entities. Mrkdwn is already escaped and comes back as it is, so that
    escaping twice (`&amp;lt;`) cannot happen."""
    if isinstance(text, Mrkdwn):
        return text
    return Mrkdwn(str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        formatted = format(value, format_spec)
        return formatted if isinstance(value, Mrkdwn) else escape(formatted)


_FORMATTER = _EscapingFormatter()


def md(template: str, /, *args: Any, **kwargs: Any) -> Mrkdwn:
    """`template.format(...)` with every value escaped unless it is Mrkdwn already. The
    template is ours (a literal in this module): its markup is meant."""
    return Mrkdwn(_FORMATTER.format(template, *args, **kwargs))


_USER_ID = re.compile(r"[UW][A-Z0-9]+")


def mention(user_id: str) -> Mrkdwn:
    """`<@U123>` for a Slack user id; anything else is shown as text, never as markup."""
    return Mrkdwn(f"<@{user_id}>") if _USER_ID.fullmatch(user_id) else escape(user_id)


def link(url: str, label: str) -> Mrkdwn:
    """`<url|label>`, both escaped; a `|` in the URL is percent-encoded so the label stays."""
    return Mrkdwn(f"<{escape(url).replace('|', '%7C')}|{escape(label)}>")


def fit(text: str, limit: int) -> Mrkdwn:
    """`text` escaped and at most `limit` characters, cut visibly ("…") but never inside an
    entity (`&amp;`) or a piece of our markup (`<@U1>`, a link): a cut link would lose its
    closing `>` and swallow what follows."""
    safe = escape(text)
    if len(safe) <= limit:
        return safe
    head = safe[: limit - 1]
    opened = head.rfind("<")
    if opened != -1 and ">" not in head[opened:]:
        head = head[:opened]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return Mrkdwn(head.rstrip() + "…")


def message(text: str, blocks: list[Block] | None = None) -> dict:
    """A message for chat.postMessage, chat.update, chat.postEphemeral, a response_url or an
    ack: the fallback `text` (escaped unless Mrkdwn) and the blocks."""
    built: dict[str, Any] = {"text": fit(text, FALLBACK_LIMIT)}
    if blocks is not None:
        built["blocks"] = blocks
    return built


def sentence(text: str) -> dict:
    """One private sentence (a refusal, a core workflow's note), escaped: the core and the
    parser speak plain text, and their sentences may quote the prompt."""
    return message(text)


def refusal(error: Exception, providers: list[str]) -> dict:
    """The acknowledgement of a command we cannot take: the parser's sentence (which may quote
    what was typed) or the service's."""
    if isinstance(error, ImagineError):
        return message(error_text(error))
    text = str(error)
    if isinstance(error, UnknownProviderError):
        text += f" Choose one of: {', '.join(providers)}, or leave it out."
    return sentence(text)


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_LIMIT)}}


def plain_text(text: str, limit: int) -> dict:
    return {"type": "plain_text", "text": fit(text, limit)}


def context_block(*texts: str) -> Block:
    elements = [{"type": "mrkdwn", "text": fit(t, SECTION_LIMIT)} for t in texts if t]
    return {"type": "context", "elements": elements[:CONTEXT_ELEMENTS]}


def context_blocks(texts: list[str]) -> list[Block]:
    """As many context blocks as `texts` need (10 elements each)."""
    texts = [t for t in texts if t]
    return [
        context_block(*texts[i : i + CONTEXT_ELEMENTS])
        for i in range(0, len(texts), CONTEXT_ELEMENTS)
    ]


def image_block(url: str, alt_text: str, title: str | None = None) -> Block:
    block: Block = {"type": "image", "image_url": url, "alt_text": fit(alt_text, ALT_TEXT_LIMIT)}
    if title:
        block["title"] = plain_text(title, ALT_TEXT_LIMIT)
    return block


def upload_alt_text(text: str) -> Mrkdwn:
    """An uploaded file's `alt_txt`: Slack refuses more than 1,000 characters."""
    return fit(text, UPLOAD_ALT_LIMIT)


def upload_title(text: str) -> Mrkdwn:
    return fit(text, UPLOAD_TITLE_LIMIT)


def help_message(providers: dict[str, tuple[str, list[str]]], default: str | None) -> dict:
    """Usage, options, and which providers are configured here.

    `providers` maps name -> (aliases joined, missing settings). All plain text: its `<prompt>`
    placeholders are escaped like everything else.
    """
    lines = []
    if default == "compare":
        lines.append("• `/imagine <prompt>` compares every configured provider, blind (default)")
    elif default == "auto":
        lines.append(
            "• `/imagine <prompt>` lets the team's votes choose (default): it compares every "
            "configured provider, blind, until one clearly leads, then uses that one. "
            "Choose your own in the app's Home tab."
        )
    for name, (aliases, missing) in providers.items():
        state = "ready" if not missing else f"not configured (needs {', '.join(missing)})"
        mark = " (default)" if name == default else ""
        lines.append(f"• `{name}`{mark}{f' — also {aliases}' if aliases else ''}: {state}")
    text = escape(
        "*Imagine draws pictures from your words.*\n"
        "`/imagine <provider> <prompt> [options]` or `/imagine <prompt>` for the default.\n"
        "Example: `/imagine imagen a lighthouse in a storm, oil painting --ar 16:9`\n"
        "`/imagine` alone opens a form (prompt, model, size, things to avoid); so does "
        "*Imagine this* in a message's ⋯ menu, with the message as the prompt. Under every "
        "picture: Again, Try with the other model, Compare, Edit prompt, Delete. You can also "
        "send me a prompt in a direct message.\n"
        "`/imagine compare <prompt>` draws it with every provider, side by side and blind: "
        "react to vote. `/imagine leaderboard` shows which model the team prefers "
        f"({LEADERBOARD_HELP}). `/imagine usage` shows your pictures and their cost.\n\n"
        f"*Options* (at the end): {OPTION_HELP}\n\n*Providers here:*\n" + "\n".join(lines)
    )
    return message(text, [section(text)])


def working_text(models: dict[str, str], request: ImageRequest) -> Mrkdwn:
    """The ephemeral ack: what is being drawn, by whom (or, for a comparison, by how many)."""
    prompt = fit(request.prompt, 200)
    if len(models) > 1:
        return md(
            ":art: Comparing {} models on “{}”. The pictures will appear side by side, blind: "
            "react to vote for the one you prefer.",
            len(models),
            prompt,
        )
    [(provider, model)] = models.items()
    n = f"{request.n} pictures" if request.n > 1 else "a picture"
    return md(":art: Drawing {} of “{}” with {} (`{}`)…", n, prompt, provider, model)


def result_message(
    result: ProviderResult,
    request: ImageRequest,
    user_id: str,
    seconds: float,
    buttons: Block | None = None,
    why: str | None = None,
) -> dict:
    """The channel message for one provider's pictures, an image block for each that has a
    URL (an upload's message shows its files instead), with the picture's `buttons`
    (`bot.slack.buttons`) last; `why`: why this provider drew it when
    nobody named one ("the team's favourite, 1,068 vs 932")."""
    blocks: list[Block] = [section(md("*{}*", fit(request.prompt, SECTION_LIMIT - 2)))]
    for i, image in enumerate(result.images[:4], start=1):
        if image.url is None or len(image.url) > URL_LIMIT:
            continue
        blocks.append(image_block(image.url, f"Picture {i}: {request.prompt}"))
    blocks.append(context_block(byline(result, user_id, seconds), RATE_HINT))
    if why:
        blocks.append(context_block(chosen_text(result.provider, why)))
    if result.revised_prompt and result.revised_prompt.strip() != request.prompt.strip():
        blocks.append(context_block(md("*Revised prompt:* {}", result.revised_prompt)))
    if result.notes:
        blocks.append(context_block(*(md(":warning: {}", note) for note in result.notes)))
    if buttons is not None:
        blocks.append(buttons)
    text = md("{}'s picture: {} ({})", mention(user_id), fit(request.prompt, 150), result.provider)
    return message(text, blocks)


RATE_HINT = "React :+1: or :-1: to rate this model."


def preview_message(
    request: ImageRequest, provider: str, model: str, url: str, index: int, user_id: str
) -> dict:
    """A picture still being drawn: the model's latest preview, marked as one, replaced in
    place by the next preview and by the finished picture."""
    blocks: list[Block] = [
        section(md("*{}*", fit(request.prompt, SECTION_LIMIT - 2))),
        image_block(url, f"Preview {index + 1}: {request.prompt}"),
        context_block(
            md(
                ":hourglass_flowing_sand: Still drawing: preview {} · {} · `{}` · asked by {}",
                index + 1,
                provider,
                model,
                mention(user_id),
            )
        ),
    ]
    text = md("{}'s picture, still drawing: {}", mention(user_id), fit(request.prompt, 150))
    return message(text, blocks)


PREVIEW_WITHDRAWN = "This picture could not be finished; the preview was withdrawn."


def chosen_text(provider: str, why: str) -> Mrkdwn:
    return md(":trophy: Drawn by {}: {}.", provider, fit(why, 300))


def byline(result: ProviderResult, user_id: str, seconds: float) -> Mrkdwn:
    return md(
        "{} · `{}` · asked by {} · {:.1f} s",
        result.provider,
        result.model,
        mention(user_id),
        seconds,
    )


def upload_comment(
    result: ProviderResult,
    request: ImageRequest,
    user_id: str,
    seconds: float,
    why: str | None = None,
) -> Mrkdwn:
    """The comment that goes with images uploaded into Slack without blocks (an edit's in
    its thread, or where Slack refused the blocks)."""
    lines = [
        md("*{}*", fit(request.prompt, 2500)),
        md("{} · {}", byline(result, user_id, seconds), RATE_HINT),
    ]
    if why:
        lines.append(chosen_text(result.provider, why))
    if result.revised_prompt and result.revised_prompt.strip() != request.prompt.strip():
        lines.append(md("_Revised prompt:_ {}", fit(result.revised_prompt, 1000)))
    lines.extend(md(":warning: {}", fit(note, 500)) for note in result.notes)
    return Mrkdwn("\n".join(lines))


def error_text(error: ImagineError) -> Mrkdwn:
    """One short sentence saying what happened and what to do."""
    who = f"{error.provider}: " if error.provider else ""
    if isinstance(error, ContentPolicyError):
        reason = error.reason or ""
        why = md(" Reason: {}", fit(reason, 300)) if reason and reason not in error.message else ""
        return md(":no_entry: {}{}{}", who, error.message, why)
    if isinstance(error, RateLimitError):
        return md(":hourglass: {}{}", who, error.message)
    return md(":warning: {}{}", who, error.message)


CANCEL_ACTION = "imagine_cancel"


def waiting_note(prompt: str, ahead: dict[str, int], job_key: str) -> dict:
    """The private note while a picture waits for quota, with a Cancel button."""
    waits = " · ".join(
        f"{label}'s quota, {n} ahead of you" if n else f"{label}'s quota, next in line"
        for label, n in ahead.items()
    )
    text = md(":hourglass_flowing_sand: Waiting for {}. “{}”", waits, fit(prompt, 200))
    return message(
        text,
        [
            section(text),
            {
                "type": "actions",
                "block_id": "imagine_waiting",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CANCEL_ACTION,
                        "text": plain_text("Cancel", 75),
                        "value": job_key,
                    }
                ],
            },
        ],
    )


def drawing_note(prompt: str) -> dict:
    text = md(":art: Drawing “{}” now…", fit(prompt, 200))
    return message(text, [section(text)])


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
    options: dict[str, Any] = field(default_factory=dict)  # the request's, for its buttons

    @classmethod
    def of(cls, post: Any, emoji: dict[str, str]) -> ComparisonView:
        """The view of a core `ComparisonPost` (or its stored dict) with the voting emoji."""
        fields = post if isinstance(post, dict) else vars(post)
        names = ("prompt", "pictures", "originals", "models", "requester", "seconds")
        return cls(
            **{name: fields[name] for name in names},
            emoji=emoji,
            reveal_after=fields["reveal_after"],
            options=dict(fields.get("options") or {}),  # rows before 2026-11 have none
        )

    def how_to_vote(self) -> Mrkdwn:
        how = " · ".join(f":{self.emoji[c]}: {label}" for c, label in CHOICE_LABELS.items())
        return md("React to vote: {}. One vote per person; a new reaction replaces it.", how)

    def byline(self) -> Mrkdwn:
        return md(
            "blind comparison · asked by {} · {:.1f} s", mention(self.requester), self.seconds
        )


def reveal_button(value: str) -> Block:
    return {
        "type": "actions",
        "block_id": "imagine_compare",
        "elements": [
            {
                "type": "button",
                "action_id": REVEAL_ACTION,
                "text": plain_text("Reveal the models", 75),
                "value": value,
            }
        ],
    }


def full_size_links(originals: dict[str, list[str]]) -> list[Mrkdwn]:
    """`Full size A: 1 2 3 4` per side, as context elements: a side whose links do not fit
    in one element (signed URLs are long) goes on in the next, so no link is ever cut. A URL
    too long for any element is left out."""
    elements: list[Mrkdwn] = []
    for position, urls in originals.items():
        first, more = md("Full size {}:", position), md("Full size {}, continued:", position)
        current = first
        for n, url in enumerate(urls, start=1):
            piece = link(url, str(n))
            if len(more) + 1 + len(piece) > SECTION_LIMIT:
                continue
            if len(current) + 1 + len(piece) > SECTION_LIMIT:
                elements.append(current)
                current = more
            current = md("{} {}", current, piece)
        if current not in (first, more):
            elements.append(current)
    return elements


def compare_message(
    view: ComparisonView,
    revealed: bool = False,
    tally: dict[str, int] | None = None,
    votable: bool = True,
    buttons: Block | None = None,
) -> dict:
    """The blind side-by-side post: the composed picture, links to the originals, how to
    vote and a Reveal button; once revealed, which model drew which side. Not `votable`
    (it could not be recorded): the models named, and no way to vote."""
    blocks: list[Block] = [
        section(md("*Which picture is better?*\n“{}”", fit(view.prompt, SECTION_LIMIT - 40)))
    ]
    alt = f"Pictures side by side, A on the left and B on the right: {view.prompt}"
    for i, url in enumerate(view.pictures, start=1):
        blocks.append(image_block(url, alt, f"Pair {i}" if len(view.pictures) > 1 else None))
    blocks.extend(context_blocks(full_size_links(view.originals)))
    if revealed:
        blocks.append(context_block(reveal_text(view.models, tally or {})))
        if buttons is not None:
            blocks.append(buttons)
    elif not votable:
        blocks.append(context_block(unvotable_text(view.models)))
    else:
        blocks.append(
            context_block(
                md(
                    "{} The models stay hidden until {} votes or the requester reveals them.",
                    view.how_to_vote(),
                    view.reveal_after,
                )
            )
        )
        blocks.append(reveal_button("reveal"))
    blocks.append(context_block(view.byline()))
    text = md("{} compares models: {}.", mention(view.requester), fit(view.prompt, 150))
    return message(md("{} React to vote.", text) if votable else text, blocks)


def _sides(models: dict[str, tuple[str, str]]) -> Mrkdwn:
    return Mrkdwn(
        " · ".join(
            md("{} was *{}* (`{}`)", position, provider, model)
            for position, (provider, model) in models.items()
        )
    )


def reveal_text(models: dict[str, tuple[str, str]], tally: dict[str, int]) -> Mrkdwn:
    votes = " · ".join(f"{CHOICE_LABELS[c]}: {tally.get(c, 0)}" for c in CHOICE_LABELS)
    return md("{}\nVotes so far: {}", _sides(models), votes)


NOT_VOTABLE = "Voting is off for this comparison: I could not record it, so votes would be lost."


def unvotable_text(models: dict[str, tuple[str, str]]) -> Mrkdwn:
    return md("{}\n{}", _sides(models), NOT_VOTABLE)


def reveal_reply(
    models: dict[str, tuple[str, str]], tally: dict[str, int], buttons: Block | None = None
) -> dict:
    """The reveal as a thread reply, for a comparison posted as an upload (with its buttons:
    an upload cannot carry any)."""
    text = reveal_text(models, tally)
    if buttons is None:
        return message(text)
    return message(text, [section(text), buttons])


def compare_comment(view: ComparisonView) -> Mrkdwn:
    """The comparison as a file comment, when the pictures are uploaded into Slack."""
    return md(
        "*Which picture is better?* “{}”\n{} The models stay hidden until {} votes or {} "
        "reveals them.\n{}",
        fit(view.prompt, 2000),
        view.how_to_vote(),
        view.reveal_after,
        mention(view.requester),
        view.byline(),
    )


def reveal_prompt(channel: str, ts: str) -> dict:
    """The requester's private Reveal button, for comparisons posted as file uploads."""
    text = "Only you can see this: reveal which model drew which picture whenever you like."
    return message(text, [section(text), reveal_button(f"{channel}|{ts}")])


def reveal_refused(requester: str, reveal_after: int) -> dict:
    """Someone other than the requester pressed Reveal."""
    return message(
        md(
            "Only {} can reveal the models early; they are revealed after {} votes.",
            mention(requester),
            reveal_after,
        )
    )


# -- leaderboard ----------------------------------------------------------------------------
def leaderboard_message(result, chart_url: str | None, min_votes: int, filters: str) -> dict:
    """Ratings as a monospace table (and the chart when it has a URL), thumbs apart."""
    title = f"Imagine leaderboard{f' · {filters}' if filters else ''}"
    blocks: list[Block] = [{"type": "header", "text": plain_text(title, HEADER_LIMIT)}]
    if result.rows:
        blocks.append(section(md("```{}```", fit(leaderboard_table(result), SECTION_LIMIT - 6))))
        if chart_url:
            blocks.append(image_block(chart_url, "Ratings with 95% intervals"))
    else:
        blocks.append(section("No head-to-head votes yet: `/imagine compare <prompt>` and react."))
    if result.thumbs:
        thumbs = " · ".join(
            md("`{}` :+1: {} :-1: {}", t.model, t.up, t.down) for t in result.thumbs
        )
        blocks.append(context_block(md("*Single pictures:* {}", Mrkdwn(thumbs))))
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
    return message(text, blocks)


def leaderboard_table(result) -> str:
    """The ratings as fixed-width lines (plain text: escape it where it is shown)."""
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
    return "\n".join(lines)


def leaderboard_comment(leaderboard: dict) -> Mrkdwn:
    """The leaderboard as the comment of its chart's upload: the title and the table."""
    table = leaderboard["blocks"][1]["text"]["text"]
    return md("*{}*\n{}", leaderboard["text"], table)


# -- governance: limits, budget alerts, usage ------------------------------------------------
def channel_mention(channel_id: str) -> Mrkdwn:
    """`<#C123>` for a channel id (Slack shows its name); anything else as text."""
    return Mrkdwn(f"<#{channel_id}>") if _CHANNEL_ID.fullmatch(channel_id) else escape(channel_id)


_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")


def limit_refusal(refusal: Any, now: Any = None) -> dict:
    """Why a picture is not drawn, in one sentence; a channel refusal names where it can be."""
    if refusal.reason == "channel":
        places = Mrkdwn(", ".join(channel_mention(c) for c in refusal.allowed_channels))
        return message(md(":no_entry: I don't draw in this conversation; I draw in {}.", places))
    icon = ":raised_hand:" if refusal.reason in ("daily", "budget") else ":warning:"
    return sentence(f"{icon} {refusal.plain(now)}")


def budget_alert(alert: Any) -> dict:
    """The direct message to each admin when the month's spend crosses 80 % or 100 %."""
    return sentence(f":money_with_wings: {alert.plain()}")


def _pictures(count: int, cost: float) -> str:
    return f"{count} picture{'' if count == 1 else 's'}, ${cost:,.2f}"


def usage_message(report: Any) -> dict:
    """`/imagine usage`: the person's today and month, their limit; an admin's adds the team."""
    per_day = report.daily_limit
    limit = (
        f"{per_day} picture{'' if per_day == 1 else 's'} a day (resets at midnight UTC)"
        if per_day is not None
        else "no daily limit"
    )
    lines = [
        "*Your usage*",
        f"Today: {_pictures(*report.today)} · this month: {_pictures(*report.month)}",
        f"Your limit: {limit}",
    ]
    if report.admin:
        lines += ["", f"*The team this month*: {_pictures(*report.team_month)}"]
        if report.budget_usd is not None:
            left = max(0.0, report.budget_usd - report.team_month[1])
            lines.append(f"Budget: ${report.budget_usd:,.2f}, ${left:,.2f} left")
        people = [f"{mention(r.key)} {_pictures(r.pictures, r.cost_usd)}" for r in report.per_user]
        models = [f"{r.key}: {_pictures(r.pictures, r.cost_usd)}" for r in report.per_model]
        if people:
            lines.append(md("Per person: {}", Mrkdwn(" · ".join(people[:40]))))
        if models:
            lines.append(md("Per model: {}", " · ".join(models)))
    text = Mrkdwn("\n".join(escape(line) for line in lines))
    return message(text, [section(fit(text, SECTION_LIMIT))])


# -- App Home ----------------------------------------------------------------------------------
HOME_BLOCKS = 100  # a Home tab view: at most 100 blocks
OPTION_TEXT_LIMIT = 75  # a select option's text
DEFAULT_MODEL_ACTION = "home_default_model"
DEFAULT_CHOICES = {
    "auto": "auto: the team's votes decide",
    "compare": "compare: every model, side by side, blind",
}


@dataclass(frozen=True)
class HomePicture:
    """One line of "Your last pictures": `link` made fresh for this view (None: none)."""

    prompt: str
    provider: str
    model: str
    epoch: int  # when it was drawn (seconds)
    link: str | None


def home_view(
    pictures: list[HomePicture] | None,
    leaderboard: Any,
    chart_url: str | None,
    choices: list[str],
    own: str | None,
    team_default: str | None,
    min_votes: int,
) -> dict:
    """The Home tab: your default model, your last pictures, the team's leaderboard.

    `pictures` None: the history could not be read; `leaderboard` None: nor the votes.
    `choices` are the values the default-model menu offers (providers, compare, auto)."""
    blocks: list[Block] = [
        {"type": "header", "text": plain_text("Imagine", HEADER_LIMIT)},
        _default_model_block(choices, own),
        context_block(_default_model_note(own, team_default)),
        {"type": "divider"},
        {"type": "header", "text": plain_text("Your last pictures", HEADER_LIMIT)},
    ]
    if pictures is None:
        blocks.append(section("Your pictures could not be loaded just now; open this tab again."))
    elif not pictures:
        blocks.append(
            section("No pictures yet: try `/imagine a lighthouse in a storm, oil painting`.")
        )
    for picture in pictures or []:
        blocks.append(section(home_picture_text(picture)))
    blocks += [
        {"type": "divider"},
        {"type": "header", "text": plain_text("Team leaderboard", HEADER_LIMIT)},
    ]
    if leaderboard is None:
        blocks.append(section("The leaderboard could not be computed just now."))
    elif not leaderboard.rows:
        blocks.append(section("No head-to-head votes yet: `/imagine compare <prompt>` and react."))
    else:
        blocks.append(
            section(md("```{}```", fit(leaderboard_table(leaderboard), SECTION_LIMIT - 6)))
        )
        if chart_url and len(chart_url) <= URL_LIMIT:
            blocks.append(image_block(chart_url, "Ratings with 95% intervals"))
        else:
            blocks.append(
                context_block(
                    "The chart needs an image store (GCS_BUCKET): `/imagine leaderboard --post` "
                    "uploads it to a channel instead."
                )
            )
        blocks.append(
            context_block(
                f"Bradley-Terry ratings, mean 1000, 95% bootstrap intervals; "
                f"* provisional: fewer than {min_votes} votes."
            )
        )
    return {"type": "home", "callback_id": "imagine_home", "blocks": blocks[:HOME_BLOCKS]}


def home_picture_text(picture: HomePicture) -> Mrkdwn:
    """Prompt (escaped, cut), model, when (Slack shows it in the reader's time zone), link."""
    when = Mrkdwn(
        f"<!date^{int(picture.epoch)}^{{date_short_pretty}} {{time}}|{int(picture.epoch)}>"
    )
    where = link(picture.link, "open") if picture.link else escape("no link")
    return md(
        "*{}*\n{} · `{}` · {} · {}",
        fit(picture.prompt, 500),
        picture.provider,
        fit(picture.model, 200),
        when,
        where,
    )


def _option(value: str) -> dict:
    return {
        "text": plain_text(DEFAULT_CHOICES.get(value, value), OPTION_TEXT_LIMIT),
        "value": value,
    }


def _default_model_block(choices: list[str], own: str | None) -> Block:
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": DEFAULT_MODEL_ACTION,
        "placeholder": plain_text("The team's default", OPTION_TEXT_LIMIT),
        "options": [_option(value) for value in choices],
    }
    if own in choices:
        select["initial_option"] = _option(own)
    return {
        "type": "section",
        "block_id": "default_model",
        "text": {"type": "mrkdwn", "text": md("*Your model for* `{}`", "/imagine <prompt>")},
        "accessory": select,
    }


def _default_model_note(own: str | None, team_default: str | None) -> Mrkdwn:
    team = team_default or "none configured"
    if own:
        return md(
            "Yours: `{}`. Naming a model (`/imagine imagen …`) still picks that one; the team's "
            "default is `{}`.",
            own,
            team,
        )
    return md("You follow the team's default: `{}`. Choose a model to make it yours.", team)

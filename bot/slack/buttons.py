"""The buttons under every picture: Again, Try with <the other model>, Compare, Edit prompt,
Delete. Pure: builders and the codec of what a button carries.

A button carries what its click needs (the prompt and options, who asked, which model drew
it) in its `value`, so a click is a job at once, in any process, without a database read.
Slack signs the payload it sends back and returns the value as we posted it. A value holds at
most 2,000 characters: a longer prompt is cut to fit (such prompts are rare: Slack's own
command box is small).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, fields, replace
from typing import Any

from bot.generation.types import ImageRequest
from bot.slack import messages
from bot.slack.messages import Block

AGAIN_ACTION = "imagine_again"
TRY_ACTION = "imagine_try"
COMPARE_ACTION = "imagine_compare"
EDIT_ACTION = "imagine_edit"
DELETE_ACTION = "imagine_delete"
PICTURE_ACTIONS = (AGAIN_ACTION, TRY_ACTION, COMPARE_ACTION, EDIT_ACTION, DELETE_ACTION)
VALUE_LIMIT = 2000  # Block Kit: a button's value
BUTTON_TEXT_LIMIT = 75
DEFAULTS = ImageRequest(prompt="")
# what a button carries of the request besides its prompt (the seed is left out: Again draws
# a new one); read field by field, as `asdict`'s deep copy costs ten times more (5 a picture)
OPTION_FIELDS = tuple(f.name for f in fields(ImageRequest) if f.name not in ("prompt", "seed"))


@dataclass(frozen=True)
class PictureRef:
    """What a picture's buttons know about it. `provider` None: a comparison. `target`: the
    model a "Try with" button asks for. `file_ids`: an upload's files (one per picture), deleted
    with its buttons.
    `parent_ts`: the message the buttons answer in a thread (a comparison's upload)."""

    requester: str
    request: ImageRequest
    provider: str | None = None
    target: str | None = None
    file_ids: tuple[str, ...] = ()
    parent_ts: str | None = None


def encode(ref: PictureRef) -> str:
    """The button value: compact JSON, the seed left out (Again draws a new one)."""
    options = {
        k: messages.escape(v) if isinstance(v, str) else v
        for k in OPTION_FIELDS
        if (v := getattr(ref.request, k)) != getattr(DEFAULTS, k)
    }
    data: dict[str, Any] = {"u": ref.requester, "o": options}
    files = ",".join(ref.file_ids)  # Slack's file ids are letters and digits
    for key, value in (("p", ref.provider), ("t", ref.target), ("f", files)):
        if value:
            data[key] = value
    if ref.parent_ts:
        data["m"] = ref.parent_ts
    prompt = messages.escape(ref.request.prompt)  # `<!channel>` never reaches Slack as typed
    while True:
        text = json.dumps({**data, "r": prompt}, ensure_ascii=False, separators=(",", ":"))
        if len(text) <= VALUE_LIMIT:
            return text
        prompt = messages.fit(prompt, len(prompt) - (len(text) - VALUE_LIMIT) - 1)


def decode(value: str) -> PictureRef:
    """The PictureRef in a button value; ValueError when it is not one of ours."""
    data = json.loads(value)
    if not isinstance(data, dict) or not isinstance(data.get("r"), str):
        raise ValueError("not a picture button")
    options = {
        k: html.unescape(v) if isinstance(v, str) else v
        for k, v in (data.get("o") or {}).items()
        if k in OPTION_FIELDS
    }
    return PictureRef(
        requester=str(data.get("u", "")),
        request=ImageRequest(prompt=html.unescape(data["r"]), **options),
        provider=data.get("p"),
        target=data.get("t"),
        file_ids=tuple(filter(None, str(data.get("f") or "").split(","))),
        parent_ts=data.get("m"),
    )


def _button(action_id: str, label: str, ref: PictureRef, style: str | None = None) -> dict:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": messages.plain_text(label, BUTTON_TEXT_LIMIT),
        "value": encode(ref),
    }
    if style:
        button["style"] = style
    return button


def picture_buttons(ref: PictureRef, providers: list[str]) -> Block:
    """The actions block under a picture (or a revealed comparison): `providers` are the
    configured ones, so "Try with" names each model this picture was not drawn with, and
    Compare shows only where two can be compared (a comparison's Again compares again)."""
    elements = [_button(AGAIN_ACTION, "Again", ref)]
    for name in providers:
        if name != ref.provider:
            elements.append(_button(TRY_ACTION, f"Try with {name}", replace(ref, target=name)))
    if ref.provider is not None and len(providers) > 1:
        elements.append(_button(COMPARE_ACTION, "Compare", ref))
    elements.append(_button(EDIT_ACTION, "Edit prompt", ref))
    delete = _button(DELETE_ACTION, "Delete", ref, style="danger")
    delete["confirm"] = {
        "title": messages.plain_text("Delete this picture?", 100),
        "text": messages.plain_text("It is removed from the channel for everyone.", 300),
        "confirm": messages.plain_text("Delete", 30),
        "deny": messages.plain_text("Keep it", 30),
    }
    elements.append(delete)
    return {"type": "actions", "block_id": "imagine_picture", "elements": elements[:25]}


def buttons_message(ref: PictureRef, providers: list[str]) -> dict:
    """The small message that carries an upload's buttons where Slack refused them in the
    upload's own message."""
    text = messages.md(
        "{}'s picture of “{}”: draw it again, try another model, or delete it.",
        messages.mention(ref.requester),
        messages.fit(ref.request.prompt, 200),
    )
    return messages.message(text, [messages.context_block(text), picture_buttons(ref, providers)])


def refused_delete(requester: str) -> dict:
    return messages.message(
        messages.md(
            "Only {} (who asked for this picture) or an admin can delete it.",
            messages.mention(requester),
        )
    )


def comparison_buttons(
    prompt: str,
    options: dict[str, Any],
    requester: str,
    models: dict[str, tuple[str, str]],
    parent_ts: str | None = None,
) -> Block:
    """A revealed comparison's buttons: Again compares again; "Try with" each of its models."""
    names = {f.name for f in fields(ImageRequest)} - {"prompt", "seed"}
    request = ImageRequest(prompt=prompt, **{k: v for k, v in options.items() if k in names})
    providers = sorted({provider for provider, _ in models.values()})  # not by position: blind
    ref = PictureRef(requester=requester, request=request, parent_ts=parent_ts)
    return picture_buttons(ref, providers)

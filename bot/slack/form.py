"""The `/imagine` form (a modal): its view, and a submission read back into a request. Pure.

Opened by a bare `/imagine`, the "Imagine this" message shortcut and a picture's Edit prompt
button. `private_metadata` carries where to post (the channel it was opened from) and the
response_url of what opened it, for private sentences where the bot is not a member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.generation.types import ASPECT_RATIOS, MAX_IMAGES, ImageRequest, clean_text
from bot.slack import messages
from bot.slack.command import QUALITIES, STYLES
from bot.slack.messages import Block

FORM_CALLBACK = "imagine_form"
DEFAULT_MODEL = "default"
COMPARE = "compare"
PROMPT_LIMIT = 3000  # a plain_text_input's max_length; providers check their own limits
AVOID_LIMIT = 500
OPTION_TEXT_LIMIT = 75
LOOKS = [f"quality:{q}" for q in QUALITIES] + [f"style:{s}" for s in STYLES]
# which input a field's error is shown next to (block ids)
PROMPT, MODEL, RATIO, COUNT, LOOK, AVOID = "prompt", "model", "ratio", "count", "look", "avoid"


@dataclass(frozen=True)
class FormInput:
    """A valid submission: `model` None for the default, "compare", or a provider name."""

    model: str | None
    request: ImageRequest
    channel_id: str
    response_url: str | None


class FormErrors(ValueError):
    """Field errors, keyed by block id: Slack shows each next to its field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def _option(value: str, label: str) -> dict:
    return {"text": messages.plain_text(label, OPTION_TEXT_LIMIT), "value": value}


def _select(options: list[dict], initial: str | None, placeholder: str) -> dict:
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "placeholder": messages.plain_text(placeholder, 150),
        "options": options,
    }
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return element


def _input(block_id: str, label: str, element: dict, *, optional: bool, hint: str = "") -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": messages.plain_text(label, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = messages.plain_text(hint, 2000)
    return block


def _text_input(initial: str | None, limit: int, *, multiline: bool, placeholder: str) -> dict:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": multiline,
        "max_length": limit,
        "placeholder": messages.plain_text(placeholder, 150),
    }
    if initial:
        element["initial_value"] = initial[:limit]
    return element


def form_view(
    channel_id: str,
    response_url: str | None,
    models: list[str],
    default: str | None,
    request: ImageRequest | None = None,
    model: str | None = None,
) -> dict:
    """The modal, filled in with `request` and `model` when given (Edit prompt, the shortcut).
    `models`: the configured providers; `default`: what the default draws."""
    request = request or ImageRequest(prompt="")
    model_options = [_option(DEFAULT_MODEL, f"Default ({default or 'none configured'})")]
    model_options += [_option(name, name) for name in models]
    if len(models) > 1:
        model_options.append(_option(COMPARE, "compare (both, side by side, blind)"))
    look = (
        f"quality:{request.quality}"
        if request.quality
        else (f"style:{request.style}" if request.style else None)
    )
    blocks = [
        _input(
            PROMPT,
            "Prompt",
            _text_input(request.prompt, PROMPT_LIMIT, multiline=True, placeholder="A red fox…"),
            optional=False,
        ),
        _input(
            MODEL, "Model", _select(model_options, model or DEFAULT_MODEL, "Model"), optional=False
        ),
        _input(
            RATIO,
            "Aspect ratio",
            _select([_option(r, r) for r in ASPECT_RATIOS], request.aspect_ratio, "1:1"),
            optional=False,
        ),
        _input(
            COUNT,
            "Number of pictures",
            _select(
                [_option(str(n), str(n)) for n in range(1, MAX_IMAGES + 1)], str(request.n), "1"
            ),
            optional=False,
        ),
        _input(
            LOOK,
            "Quality or style",
            _select([_option(v, v.replace(":", ": ")) for v in LOOKS], look, "the model's default"),
            optional=True,
            hint="quality: standard/hd (dalle3), low/medium/high (gpt-image); "
            "style: vivid/natural (dall-e-3 only).",
        ),
        _input(
            AVOID,
            "Things to avoid",
            _text_input(
                request.negative_prompt, AVOID_LIMIT, multiline=False, placeholder="text, blur"
            ),
            optional=True,
            hint="Imagen takes it as a negative prompt; Gemini and OpenAI's models have none, "
            "so it is added to the prompt as “Avoid: …”.",
        ),
    ]
    metadata = json.dumps({"c": channel_id, "r": response_url or ""})
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "title": messages.plain_text("Imagine", 24),
        "submit": messages.plain_text("Draw", 24),
        "close": messages.plain_text("Cancel", 24),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def _value(values: dict, block_id: str) -> Any:
    """A field's submitted value: text for inputs, the chosen option's value for selects."""
    state = (values.get(block_id) or {}).get("value") or {}
    if "selected_option" in state:
        return (state.get("selected_option") or {}).get("value")
    return state.get("value")


def read_form(view: dict) -> FormInput:
    """The submission as a request; FormErrors for the fields a person must fix."""
    meta = json.loads(view.get("private_metadata") or "{}")
    values = (view.get("state") or {}).get("values") or {}
    errors: dict[str, str] = {}
    prompt = clean_text(_value(values, PROMPT) or "")
    if not prompt:
        errors[PROMPT] = "Describe the picture you want."
    model = _value(values, MODEL) or DEFAULT_MODEL
    ratio = _value(values, RATIO) or "1:1"
    if ratio not in ASPECT_RATIOS:
        errors[RATIO] = f"Choose one of {', '.join(ASPECT_RATIOS)}."
    count = _value(values, COUNT) or "1"
    if not count.isdigit() or not 1 <= int(count) <= MAX_IMAGES:
        errors[COUNT] = f"Choose from 1 to {MAX_IMAGES}."
    look = _value(values, LOOK)
    if look is not None and look not in LOOKS:
        errors[LOOK] = "Choose a quality or a style from the list."
    avoid = clean_text(_value(values, AVOID) or "") or None
    if errors:
        raise FormErrors(errors)
    kind, _, value = (look or "").partition(":")
    request = ImageRequest(
        prompt=prompt,
        n=int(count),
        aspect_ratio=ratio,
        negative_prompt=avoid,
        quality=value if kind == "quality" else None,
        style=value if kind == "style" else None,
    )
    return FormInput(
        model=None if model == DEFAULT_MODEL else model,
        request=request,
        channel_id=str(meta.get("c") or ""),
        response_url=meta.get("r") or None,
    )

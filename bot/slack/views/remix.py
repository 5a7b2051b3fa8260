"""The "Remix this picture" form: the words and the model. Pure: payload in, view out."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from bot.slack.messages import plain_text

CALLBACK_ID = "imagine_remix"  # the message shortcut and its form share it
WORDS_BLOCK, WORDS_ACTION = "remix_words", "words"
MODEL_BLOCK, MODEL_ACTION = "remix_model", "model"
WORDS_MAX = 3000  # plain_text_input's max_length


@dataclass(frozen=True)
class RemixTarget:
    """What the form edits and where the result goes; travels in `private_metadata`."""

    channel: str
    thread_ts: str
    picture: str
    parent_id: int | None = None

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str) -> RemixTarget:
        return cls(**json.loads(raw))


def remix_view(target: RemixTarget, providers: dict[str, str], chosen: str | None) -> dict:
    """`providers`: name -> model, in the order offered; `chosen` is selected first."""
    options = [
        {"text": plain_text(f"{name} ({model})", 75), "value": name}
        for name, model in providers.items()
    ]
    select: dict = {"type": "static_select", "action_id": MODEL_ACTION, "options": options}
    initial = next((o for o in options if o["value"] == chosen), options[0] if options else None)
    if initial is not None:
        select["initial_option"] = initial
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": target.encode(),
        "title": plain_text("Remix this picture", 24),
        "submit": plain_text("Remix", 24),
        "close": plain_text("Cancel", 24),
        "blocks": [
            {
                "type": "input",
                "block_id": WORDS_BLOCK,
                "label": plain_text("What should change?", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": WORDS_ACTION,
                    "multiline": True,
                    "max_length": WORDS_MAX,
                    "placeholder": plain_text("make it a watercolor", 150),
                },
            },
            {
                "type": "input",
                "block_id": MODEL_BLOCK,
                "label": plain_text("Model", 2000),
                "element": select,
            },
        ],
    }


def submitted(view: dict) -> tuple[str, str | None]:
    """(words, provider name) from a view_submission's state."""
    values = (view.get("state") or {}).get("values") or {}
    words = ((values.get(WORDS_BLOCK) or {}).get(WORDS_ACTION) or {}).get("value") or ""
    chosen = ((values.get(MODEL_BLOCK) or {}).get(MODEL_ACTION) or {}).get("selected_option")
    return words, (chosen or {}).get("value")

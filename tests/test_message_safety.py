"""A fuzzer over the command parser and the message builders: whatever is typed after
`/imagine`, nothing the app sends back can be a mention, a special mention or a link that
came from the prompt, every text fits Slack's limits, and no control character survives.

Slack delivers command text escaped: what a person picked from autocomplete arrives as
markup (`<@U123|bob>`, `<#C1|general>`, `<https://x|y>`, `<!here>`), what they typed out as
entities (`&lt;!channel&gt;`). Both are fed in, among arbitrary text.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.workflows import EXPIRED, INTERRUPTED
from bot.generation.providers import resolve_provider_name
from bot.generation.types import ContentPolicyError, ImageRequest, ProviderResult, StoredImage
from bot.slack import buttons, form, messages
from bot.slack.command import CommandError, CompareCommand, GenerateCommand, parse_command
from bot.votes.leaderboard import LeaderboardResult
from bot.votes.ratings import ModelStats
from tests.fakes.slack import block_errors, view_errors

REQUESTER = "UREQ42"
PICTURES = "https://img.example/"
AS_SLACK_SENDS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!here|here>",
    "<@U123>",
    "<@U123|bob>",
    "<#C1>",
    "<#C1|general>",
    "<http://x|y>",
    "<https://evil.example/free-pizza>",
    "<mailto:a@b.c|a@b.c>",
    "<!subteam^S1|design>",
    "<!date^1392734382^{date}|Feb 18>",
    "&lt;!channel&gt;",
    "&lt;!here&gt;",
    "&lt;@U123&gt;",
    "&lt;#C1&gt;",
    "&lt;http://evil.example|free pizza&gt;",
    "&amp;lt;!channel&amp;gt;",
    "&amp;",
    "&lt;",
    "&gt;",
    "<",
    ">",
    "|",
    "*",
    "`",
    "\x00",
    "\n",
    "\t",
    "\x1b",
    "--no",
    "--n",
    "2",
]
words = st.one_of(st.sampled_from(AS_SLACK_SENDS), st.text(max_size=12))
command_texts = st.builds(
    lambda first, body, joints: (
        "".join(w + j for w, j in zip(body, joints, strict=False))
        if not first
        else first + " " + "".join(w + j for w, j in zip(body, joints, strict=False))
    ),
    st.sampled_from(["", "imagen", "dalle3", "compare", "leaderboard", "midjourney", "flux"]),
    st.lists(words, max_size=14),
    st.lists(st.sampled_from([" ", "", "  ", "\n"]), min_size=14, max_size=14),
)
OUR_MARKUP = re.compile(
    rf"<@{REQUESTER}>|<{re.escape(PICTURES)}[^<>|]*\|(\d+|open)>"
    r"|<!date\^\d+\^\{date_short_pretty\} \{time\}\|\d+>"
)


def text_fields(value):
    """Every string a message sends as text (not URLs, ids or button values)."""
    if isinstance(value, dict):
        for key, item in value.items():
            # an input's initial_value is what the person edits, not text Slack formats
            if key not in (
                "image_url",
                "value",
                "action_id",
                "block_id",
                "type",
                "initial_value",
                "private_metadata",
            ):
                yield from text_fields(item)
    elif isinstance(value, list):
        for item in value:
            yield from text_fields(item)
    elif isinstance(value, str):
        yield value


def assert_safe(message: dict) -> None:
    for text in text_fields(message):
        rest = OUR_MARKUP.sub("", text)
        for markup in ("<!", "<@", "<#", "<http", "<mailto"):
            assert markup not in rest, (markup, text)
        assert "<" not in rest and ">" not in rest, text  # every other angle bracket escaped
    if message.get("type") == "home":
        assert view_errors(message) == []
    elif "blocks" in message:
        assert block_errors(message["blocks"]) == []
    if "text" in message:
        assert len(message["text"]) <= messages.FALLBACK_LIMIT


def everything_said_about(request: ImageRequest) -> list[dict]:
    """Every message the app builds that shows the prompt (or text that came with it)."""
    prompt = request.prompt
    result = ProviderResult(
        provider="imagen",
        model="gemini-3.1-flash-image",
        images=[StoredImage(url=f"{PICTURES}{i}.png") for i in range(request.n)],
        revised_prompt=f"{prompt} in watercolour",
        notes=[f"`--no {request.negative_prompt}` is approximated"],
    )
    view = messages.ComparisonView(
        prompt=prompt,
        pictures=[f"{PICTURES}ab.png"],
        originals={"A": [f"{PICTURES}a{i}.png" for i in range(request.n)], "B": []},
        models={"A": ("imagen", "gemini"), "B": ("dalle3", "gpt-image-2")},
        emoji={"A": "a", "B": "b", "tie": "handshake", "both_bad": "x"},
        requester=REQUESTER,
        seconds=1.5,
        reveal_after=3,
    )
    refused = ContentPolicyError(f"“{prompt}” was refused.", reason=prompt, provider="dalle3")
    ref = buttons.PictureRef(requester=REQUESTER, request=request, provider="imagen")
    picture_buttons = buttons.picture_buttons(ref, ["imagen", "dalle3"])
    revealed_buttons = buttons.comparison_buttons(prompt, {}, REQUESTER, view.models, "1.2")
    return [
        messages.result_message(result, request, REQUESTER, 2.0, picture_buttons),
        messages.compare_message(view, revealed=True, tally={}, buttons=revealed_buttons),
        messages.reveal_reply(view.models, {"A": 1}, revealed_buttons),
        buttons.buttons_message(ref, ["imagen", "dalle3"]),
        buttons.refused_delete(REQUESTER),
        {"blocks": form.form_view("C1", None, ["imagen", "dalle3"], "compare", request)["blocks"]},
        messages.result_message(result, request, REQUESTER, 2.0),
        messages.message(messages.upload_comment(result, request, REQUESTER, 2.0)),
        messages.message(messages.working_text({"imagen": "m"}, request)),
        messages.message(messages.working_text({"imagen": "m", "dalle3": "n"}, request)),
        messages.waiting_note(prompt, {"Google Vertex AI": 3}, "job-key"),
        messages.drawing_note(prompt),
        messages.preview_message(
            request, "dalle3", "gpt-image-2", f"{PICTURES}p.png", 0, REQUESTER
        ),
        messages.message(messages.error_text(refused)),
        messages.sentence(EXPIRED.format(prompt=prompt, minutes=10)),
        messages.sentence(INTERRUPTED.format(prompt=prompt)),
        messages.compare_message(view),
        messages.compare_message(view, revealed=True, tally={"A": 2}),
        messages.message(messages.compare_comment(view)),
        {"title": messages.upload_title(prompt), "alt_txt": messages.upload_alt_text(prompt)},
        messages.result_message(result, request, REQUESTER, 2.0, why=f"the team's {prompt}"),
        messages.message(messages.upload_comment(result, request, REQUESTER, 2.0, why=prompt)),
        home_view_about(prompt),
    ]


def home_view_about(prompt: str) -> dict:
    """The Home tab with ten pictures of `prompt` (the model name typed too) and a table."""
    pictures = [
        messages.HomePicture(prompt, "dalle3", prompt, 1_700_000_000 + i, f"{PICTURES}{i}.png")
        for i in range(10)
    ]
    row = ModelStats(prompt[:40] or "m", 3, 1, 0, 0, 4, 0.75, 1068.0, 1000.0, 1130.0, True)
    board = LeaderboardResult([row], [], 4, 0, 0.01, None, None, False)
    view = messages.home_view(
        pictures, board, None, ["imagen", "dalle3", "compare", "auto"], prompt, prompt, 10
    )
    return view


@settings(max_examples=300, deadline=None, database=None)
@given(command_texts)
def test_nothing_typed_becomes_a_mention_or_a_link(text: str) -> None:
    try:
        command = parse_command(text, resolve_provider_name)
    except CommandError as err:  # the refusal quotes what was typed
        assert_safe(messages.refusal(err, ["imagen", "dalle3"]))
        return
    if not isinstance(command, GenerateCommand | CompareCommand):
        return  # help and the leaderboard take no free text
    request = command.request
    for typed in filter(None, (request.prompt, request.negative_prompt)):
        assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in typed), typed
    for message in everything_said_about(request):
        assert_safe(message)
    assert_buttons_round_trip(request)


def assert_buttons_round_trip(request: ImageRequest) -> None:
    """What a button carries comes back as it was (the seed left out: Again draws a new one),
    whatever was typed; only a prompt too long for a button value is cut."""
    ref = buttons.PictureRef(requester=REQUESTER, request=request, provider="dalle3")
    value = buttons.encode(ref)
    assert len(value) <= buttons.VALUE_LIMIT
    back = buttons.decode(value)
    assert back.requester == REQUESTER and back.provider == "dalle3"
    assert back.request.negative_prompt == request.negative_prompt
    assert back.request.seed is None and back.request.n == request.n
    if len(request.prompt) < 300:
        assert back.request.prompt == request.prompt

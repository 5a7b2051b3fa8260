"""Block Kit building: limits, fallbacks, escaping. Pure functions."""

import re

import pytest

from bot.generation.types import (
    ConfigurationError,
    ContentPolicyError,
    ImageRequest,
    ProviderResult,
    RateLimitError,
    StoredImage,
)
from bot.slack import messages
from tests.fakes.slack import block_errors


def result(**kw) -> ProviderResult:
    base = dict(
        provider="imagen",
        model="gemini-3.1-flash-image",
        images=[StoredImage(url=f"https://img.example/{i}.png") for i in range(2)],
    )
    base.update(kw)
    return ProviderResult(**base)


def test_result_message_has_images_byline_and_fallback():
    message = messages.result_message(result(), ImageRequest("a red fox"), "U1", 12.34)
    kinds = [b["type"] for b in message["blocks"]]
    assert kinds == ["section", "image", "image", "context"]
    assert message["blocks"][1]["image_url"] == "https://img.example/0.png"
    assert message["blocks"][1]["alt_text"].endswith("a red fox")
    byline = message["blocks"][-1]["elements"][0]["text"]
    assert "gemini-3.1-flash-image" in byline and "<@U1>" in byline and "12.3 s" in byline
    assert "a red fox" in message["text"] and "imagen" in message["text"]


def test_revised_prompt_and_notes_are_shown():
    r = result(revised_prompt="a red fox in snow, photo", notes=["style is not supported"])
    message = messages.result_message(r, ImageRequest("a red fox"), "U1", 1)
    texts = [e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert any("Revised prompt" in t and "in snow" in t for t in texts)
    assert any("style is not supported" in t for t in texts)


def test_unchanged_revised_prompt_is_not_repeated():
    message = messages.result_message(
        result(revised_prompt="a red fox"), ImageRequest("a red fox"), "U1", 1
    )
    assert not any("Revised" in str(b) for b in message["blocks"])


def test_long_prompt_is_truncated_visibly_within_limits():
    prompt = "x" * 5000
    message = messages.result_message(result(), ImageRequest(prompt), "U1", 1)
    section = message["blocks"][0]["text"]["text"]
    assert len(section) <= 3000 and section.rstrip("*").endswith("…")
    assert all(len(b["alt_text"]) <= 2000 for b in message["blocks"] if b["type"] == "image")
    assert len(message["text"]) < 3000
    assert len(message["blocks"]) <= 50


def test_mrkdwn_control_characters_are_escaped():
    message = messages.result_message(result(), ImageRequest("<!channel> & <b>"), "U1", 1)
    assert "<!channel>" not in message["blocks"][0]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;b&gt;" in message["blocks"][0]["text"]["text"]


def test_error_texts_name_provider_and_what_to_do():
    policy = ContentPolicyError(
        "Refused; try rewording it.", reason="violence (medium)", provider="imagen"
    )
    assert messages.error_text(policy) == (
        ":no_entry: imagen: Refused; try rewording it. Reason: violence (medium)"
    )
    quota = messages.error_text(RateLimitError("Busy; try again in 1 minute.", provider="dalle3"))
    assert "try again in 1 minute" in quota
    config = messages.error_text(
        ConfigurationError("Check AZURE_OPENAI_API_KEY.", provider="dalle3")
    )
    assert "AZURE_OPENAI_API_KEY" in config


def test_help_lists_providers_and_what_they_need():
    message = messages.help_message(
        {"imagen": ("google, gemini", []), "dalle3": ("dalle", ["OPENAI_API_KEY"])}, "imagen"
    )
    assert "`imagen` (default)" in message["text"]
    assert "needs OPENAI_API_KEY" in message["text"]
    assert "--ar" in message["text"]


# -- escaping: nothing typed becomes a mention or a link --------------------------------------
HOSTILE = "<!channel> <!here> <@U666> <#C1> <http://evil.example|free pizza> & co"
ESCAPED = (
    "&lt;!channel&gt; &lt;!here&gt; &lt;@U666&gt; &lt;#C1&gt; "
    "&lt;http://evil.example|free pizza&gt; &amp; co"
)


def own_markup_removed(text: str, user: str = "U1", urls: tuple[str, ...] = ()) -> str:
    """`text` without the markup the app means: the requester's mention, links to pictures."""
    text = text.replace(f"<@{user}>", "")
    return re.sub(r"<https://img\.example/[^<>|]*\|\d+>", "", text)


def text_fields(value, key=""):
    """Every string a message sends to Slack as text (not URLs, ids or button values)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("image_url", "value", "action_id", "block_id", "type"):
                yield from text_fields(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from text_fields(item, key)
    elif isinstance(value, str):
        yield value


def view(prompt: str, originals=None, pictures=("https://img.example/ab.png",)):
    return messages.ComparisonView(
        prompt=prompt,
        pictures=list(pictures),
        originals=originals or {"A": ["https://img.example/a.png"], "B": []},
        models={"A": ("imagen", "gemini"), "B": ("dalle3", "gpt-image-2")},
        emoji={"A": "a", "B": "b", "tie": "handshake", "both_bad": "x"},
        requester="U1",
        seconds=3.2,
        reveal_after=3,
    )


def test_the_fallback_texts_of_posts_are_escaped():
    """The notification text went out raw: a prompt could ping the whole channel."""
    single = messages.result_message(result(), ImageRequest(HOSTILE), "U1", 1)
    compare = messages.compare_message(view(HOSTILE))
    for message in (single, compare):
        assert ESCAPED in message["text"]
        assert "<@U1>" in message["text"]  # the requester's mention is ours, and stays
        for text in text_fields(message):
            assert "<" not in own_markup_removed(text), text


def test_every_builder_escapes_what_was_typed():
    r = result(revised_prompt=HOSTILE, notes=[HOSTILE])
    request = ImageRequest(HOSTILE)
    built = [
        messages.result_message(r, request, "U1", 1),
        {"text": messages.upload_comment(r, request, "U1", 1)},
        {"text": messages.working_text({"imagen": "m"}, request)},
        {"text": messages.working_text({"imagen": "m", "dalle3": "n"}, request)},
        messages.waiting_note(HOSTILE, {HOSTILE: 2}, "key"),
        messages.drawing_note(HOSTILE),
        {"text": messages.error_text(ContentPolicyError(HOSTILE, reason=HOSTILE[:20]))},
        {"text": messages.error_text(RateLimitError(HOSTILE, provider="imagen"))},
        messages.sentence(f"Your picture of “{HOSTILE}” could not be drawn."),
        messages.compare_message(view(HOSTILE), revealed=True, tally={"A": 1}),
        {"text": messages.compare_comment(view(HOSTILE))},
        messages.reveal_reply({"A": (HOSTILE, HOSTILE)}, {}),
        messages.reveal_refused("U1", 3),
        {"title": messages.upload_title(HOSTILE), "alt": messages.upload_alt_text(HOSTILE)},
    ]
    for message in built:
        for text in text_fields(message):
            assert "<" not in own_markup_removed(text), (message, text)
    assert ESCAPED in built[0]["blocks"][0]["text"]["text"]
    assert "<@U1>" in built[1]["text"]  # the byline's mention is markup we mean


def test_escaping_twice_is_impossible():
    once = messages.escape("a & b")
    assert once == "a &amp; b" and messages.escape(once) == once
    assert messages.md("*{}* {}", "x<y", once) == "*x&lt;y* a &amp; b"
    assert messages.mention("U123") == "<@U123>"
    assert messages.mention("<!channel>") == "&lt;!channel&gt;"  # not a user id: just text


def test_help_placeholders_are_not_markup():
    message = messages.help_message({"imagen": ("", [])}, "imagen")
    assert "`/imagine &lt;provider&gt; &lt;prompt&gt; [options]`" in message["text"]
    assert "<" not in message["text"]


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("&" * 100, 50),
        ("a" * 47 + "<b>", 50),
        ("x" * 3000, 3000),
        ("x" * 3001, 3000),
    ],
)
def test_fit_cuts_visibly_and_never_inside_an_entity(text, limit):
    fitted = messages.fit(text, limit)
    assert len(fitted) <= limit
    assert fitted == messages.escape(text) or fitted.endswith("…")
    assert re.sub(r"&(amp|lt|gt);", "", fitted).count("&") == 0


def test_fit_never_cuts_a_link():
    link = messages.link("https://img.example/a.png?X-Goog-Signature=" + "f" * 200, "1")
    fitted = messages.fit(messages.md("Full size: {} {}", link, link), 300)
    assert fitted.count("<") == fitted.count(">") == 1 and fitted.endswith("…")


# -- limits ----------------------------------------------------------------------------------
def signed_url(name: str, length: int = 1100) -> str:
    """A URL the length of a V4 signed URL (the credential, then a 512-hex signature)."""
    base = (
        f"https://img.example/imgs/2026/11/05/{name}.png?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=imagine%40project.iam.gserviceaccount.com%2F20261105%2Fauto"
        "%2Fstorage%2Fgoog4_request&X-Goog-Date=20261105T101500Z&X-Goog-Expires=604800"
        "&X-Goog-SignedHeaders=host&X-Goog-Signature="
    )
    return base + "f" * (length - len(base))


def test_full_size_links_of_four_pictures_a_side_are_never_cut():
    originals = {p: [signed_url(f"{p}{i}") for i in range(4)] for p in "AB"}
    message = messages.compare_message(view("a red fox", originals=originals))
    assert block_errors(message["blocks"]) == []
    contexts = [
        e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]
    ]
    texts = [text for text in contexts if text.startswith("Full size")]
    links = [link for text in texts for link in re.findall(r"<([^<>]*)>", text)]
    expected = [
        f"{messages.escape(u)}|{n}"
        for urls in originals.values()
        for n, u in enumerate(urls, start=1)
    ]
    assert links == expected  # all eight, each whole, in order
    assert all(text.count("<") == text.count(">") for text in texts)
    assert any(text.startswith("Full size A, continued:") for text in texts)


def test_a_url_too_long_for_any_text_is_left_out_not_cut():
    originals = {"A": [signed_url("a", 3100), "https://img.example/short.png"], "B": []}
    [text] = messages.full_size_links(originals)
    assert text == "Full size A: <https://img.example/short.png|2>"


def test_upload_alt_text_fits_slacks_1000_characters():
    alt = messages.upload_alt_text("a fox & a hound " * 100)
    assert len(alt) <= 1000 and alt.endswith("…") and "&amp;" in alt


def test_long_hostile_prompts_stay_within_every_limit():
    prompt = (HOSTILE + " ") * 400
    r = result(revised_prompt=prompt, notes=[prompt] * 12)
    single = messages.result_message(r, ImageRequest(prompt), "U1", 1)
    compare = messages.compare_message(view(prompt, pictures=["https://img.example/1.png"] * 4))
    for message in (single, compare):
        assert block_errors(message["blocks"]) == []
        assert len(message["text"]) <= 3000


def test_a_comparison_that_is_not_votable_names_the_models_and_offers_no_vote():
    view = messages.ComparisonView(
        prompt="a fox",
        pictures=["https://img/pair.png"],
        originals={"A": ["https://img/a.png"], "B": ["https://img/b.png"]},
        models={"A": ("imagen", "gemini-image"), "B": ("dalle3", "gpt-image")},
        emoji={"A": "a", "B": "b", "tie": "handshake", "both_bad": "x"},
        requester="U1",
        seconds=3.0,
        reveal_after=3,
    )
    votable = messages.compare_message(view)
    closed = messages.compare_message(view, votable=False)
    assert "React to vote" in str(votable) and "imagine_reveal" in str(votable)
    shown = str(closed["blocks"])
    assert "React to vote" not in str(closed) and "imagine_reveal" not in shown
    assert messages.NOT_VOTABLE in shown and "Votes so far" not in shown
    assert "A was *imagen* (`gemini-image`)" in shown and "B was *dalle3*" in shown
    assert [b["image_url"] for b in closed["blocks"] if b["type"] == "image"] == [
        "https://img/pair.png"
    ]

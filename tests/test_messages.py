"""Block Kit building: limits, fallbacks, escaping. Pure functions."""

from bot.generation.types import (
    ConfigurationError,
    ContentPolicyError,
    ImageRequest,
    ProviderResult,
    RateLimitError,
    StoredImage,
)
from bot.slack import messages


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

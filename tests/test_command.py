"""`/imagine` text parsing: table-driven, no I/O."""

import re
from pathlib import Path

import pytest

from bot.generation.providers import resolve_provider_name
from bot.generation.types import ImageRequest
from bot.slack.command import (
    CommandError,
    CompareCommand,
    GenerateCommand,
    HelpCommand,
    LeaderboardCommand,
    UnknownProviderError,
    parse_command,
    split_options,
    unescape_slack,
)


def parse(text: str):
    return parse_command(text, resolve_provider_name)


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", "help me", "-h", "?"])
def test_help(text):
    assert parse(text) == HelpCommand()


@pytest.mark.parametrize(
    ("text", "provider", "prompt"),
    [
        ("imagen a red fox", "imagen", "a red fox"),
        ("Imagen a red fox", "imagen", "a red fox"),
        ("GOOGLE a red fox", "imagen", "a red fox"),
        ("gemini a red fox", "imagen", "a red fox"),
        ("dalle3 a red fox", "dalle3", "a red fox"),
        ("dall-e a red fox", "dalle3", "a red fox"),
        ("openai a red fox", "dalle3", "a red fox"),
        ("gpt-image a red fox", "dalle3", "a red fox"),
        ("a red fox", None, "a red fox"),
        ("  a   red   fox  ", None, "a red fox"),
    ],
)
def test_provider_and_prompt(text, provider, prompt):
    command = parse(text)
    assert isinstance(command, GenerateCommand)
    assert command.provider == provider
    assert command.request.prompt == prompt


def test_all_options():
    command = parse(
        "dalle3 a lighthouse --n 3 --ar 16:9 --no people, boats --seed 42 --quality HD"
        " --style natural"
    )
    r = command.request
    assert (r.prompt, r.n, r.aspect_ratio, r.negative_prompt, r.seed, r.quality, r.style) == (
        "a lighthouse",
        3,
        "16:9",
        "people, boats",
        42,
        "hd",
        "natural",
    )


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("a cat —ar 9:16", "aspect_ratio", "9:16"),  # Slack's em dash
        ("a cat --aspect 4:3", "aspect_ratio", "4:3"),
        ("a cat --n=2", "n", 2),
        ("a cat --seed 0", "seed", 0),
    ],
)
def test_option_spellings(text, field, value):
    assert getattr(parse(text).request, field) == value


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("a cat --n 5", "from 1 to 4"),
        ("a cat --n two", "whole number"),
        ("a cat --ar 2:1", "one of 1:1, 16:9, 9:16, 4:3, 3:4"),
        ("a cat --style weird", "vivid, natural"),
        ("a cat --quality ultra", "standard, hd"),
        ("a cat --bogus 1", "Unknown option `--bogus`"),
        ("a cat --seed -1", "from 0"),
        ("a cat --n", "needs a value"),
        ("a cat --n 1 --n 2", "given twice"),
        ("imagen", "Describe the picture after `imagen`"),
        ("imagen --n 2", "Describe the picture"),
    ],
)
def test_bad_input_gets_a_message(text, message_part):
    with pytest.raises(CommandError) as err:
        parse(text)
    assert message_part in str(err.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(CommandError) as err:
        parse("a cat --size 10")
    for option in ("--n", "--ar", "--no", "--seed", "--quality", "--style"):
        assert option in str(err.value)


@pytest.mark.parametrize(
    ("escaped", "readable"),
    [
        ("cats &amp; dogs", "cats & dogs"),
        ("a &lt;b&gt; tag", "a <b> tag"),
        ("portrait of <@U123ABC|alice>", "portrait of @alice"),
        ("portrait of <@U123ABC>", "portrait of @U123ABC"),
        ("logo for <#C42|design>", "logo for #design"),
        ("like <https://example.com/x|this site>", "like this site"),
        ("like <https://example.com/x>", "like https://example.com/x"),
        ("mail <mailto:a@b.c|a@b.c>", "mail a@b.c"),
        ("hey <!here>", "hey @here"),
        ("team <!subteam^S1|design-team>", "team @design-team"),
    ],
)
def test_unescape_slack(escaped, readable):
    assert unescape_slack(escaped) == readable


def test_escaped_text_reaches_the_prompt_readable():
    command = parse("imagen <@U1|bob> &amp; <#C1|general> at <https://x.io|home>")
    assert command.request.prompt == "@bob & #general at home"


def test_split_options_keeps_multiword_values():
    assert split_options("a b --no c d --n 2") == ("a b", {"no": "c d", "n": "2"})


@pytest.mark.parametrize("word", ["midjourney", "Flux", "sdxl"])
def test_other_model_names_are_not_drawn_with_the_default(word):
    with pytest.raises(UnknownProviderError) as err:
        parse(f"{word} a red fox")
    assert word in str(err.value)


def test_a_prompt_that_is_only_a_model_name_is_still_a_prompt():
    assert parse("flux").request.prompt == "flux"


@pytest.mark.parametrize("word", ["compare", "VS", "both"])
def test_compare(word):
    command = parse(f"{word} a red fox --n 2 --ar 4:3")
    assert command == CompareCommand(
        ImageRequest("a red fox", n=2, aspect_ratio="4:3"), {"n": "2", "ar": "4:3"}
    )


def test_compare_needs_a_prompt():
    with pytest.raises(CommandError, match="Describe the picture to compare"):
        parse("compare")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("leaderboard", LeaderboardCommand()),
        ("stats", LeaderboardCommand()),
        ("leaderboard --blind --here", LeaderboardCommand(blind_only=True, here=True)),
        ("leaderboard --since 30d --post", LeaderboardCommand(since_seconds=30 * 86400, post=True)),
        ("leaderboard --since 12h", LeaderboardCommand(since_seconds=12 * 3600)),
        ("leaderboard —since 2w", LeaderboardCommand(since_seconds=14 * 86400)),
    ],
)
def test_leaderboard(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leaderboard --since soon", "like `30d`"),
        ("leaderboard --since 0d", "like `30d`"),
        ("leaderboard --top 5", "Unknown option `--top`"),
        ("leaderboard --blind yes", "takes no value"),
        ("leaderboard please", "takes only options"),
    ],
)
def test_leaderboard_bad_options(text, message):
    with pytest.raises(CommandError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("text", "provider", "prompt"),
    [
        ("imagen a red\x00 fox", "imagen", "a red fox"),
        ("imagen\na red fox", "imagen", "a red fox"),  # a line break after the provider
        ("imagen a red fox\n\nin the snow\t--ar 16:9", "imagen", "a red fox in the snow"),
        ("a \x1b[31mred\x7f fox\x85", None, "a [31mred fox"),
        ("a red fox \U0001f98a\u200d\U0001f525", None, "a red fox \U0001f98a\u200d\U0001f525"),
        ("&amp;#0;a fox", None, "&#0;a fox"),
    ],
    ids=["nul", "newline-after-provider", "newlines-and-tabs", "escapes", "emoji-joiner", "ref"],
)
def test_control_characters_are_dropped_and_line_breaks_are_spaces(text, provider, prompt):
    command = parse(text)
    assert (command.provider, command.request.prompt) == (provider, prompt)


def test_a_prompt_of_only_control_characters_is_no_prompt():
    assert parse("\x00\x01\n") == HelpCommand()
    with pytest.raises(CommandError, match="Describe the picture after `imagen`"):
        parse("imagen \x00\x07")


def test_control_characters_leave_option_values_too():
    assert parse("a fox --no people\x00, boats").request.negative_prompt == "people, boats"


def test_the_manifest_usage_hint_names_what_the_parser_takes():
    """Slack shows the usage hint as people type `/imagine`: compare and leaderboard too."""
    manifest = (Path(__file__).resolve().parent.parent / "manifest.yml").read_text()
    [hint] = re.findall(r'usage_hint: "([^"]*)"', manifest)
    words = re.match(r"\[([^\]]*)\]", hint).group(1).split(" | ")
    assert {"compare", "leaderboard", "help"} <= set(words)
    for word in words:
        try:
            command = parse(f"{word} a red fox")
        except CommandError:
            command = parse(word)  # the leaderboard takes only options
        assert not (isinstance(command, GenerateCommand) and command.provider is None), word

"""`/imagine ...` text -> a typed command. Pure: no I/O, table-tested.

Grammar: `[provider] prompt [--option value ...]`, options last, Midjourney style. The
first word is a provider name or alias, or `help`; otherwise the whole text is the prompt
for the default provider.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.generation.types import ASPECT_RATIOS, MAX_IMAGES, ImageRequest, clean_text

QUALITIES = ("standard", "hd", "low", "medium", "high", "auto")
STYLES = ("vivid", "natural")
OPTION_HELP = (
    f"`--n 1..{MAX_IMAGES}`, `--ar {'|'.join(ASPECT_RATIOS)}`, `--no <text to avoid>`, "
    f"`--seed N`, `--quality {'|'.join(QUALITIES)}`, `--style {'|'.join(STYLES)}`"
)
HELP_WORDS = {"help", "-h", "--help", "?"}
COMPARE_WORDS = {"compare", "vs", "both"}
LEADERBOARD_WORDS = {"leaderboard", "stats"}
LEADERBOARD_HELP = "`--blind`, `--since 30d` (or 12h, 4w), `--here`, `--post`"
# Names people try that we do not run: answer "not a provider here" instead of drawing
# "midjourney a cat" with the default provider.
OTHER_MODELS = {
    "midjourney",
    "mj",
    "sd",
    "sdxl",
    "stable-diffusion",
    "stablediffusion",
    "flux",
    "firefly",
    "ideogram",
    "leonardo",
    "recraft",
    "grok",
    "aurora",
    "kling",
    "seedream",
}


class CommandError(ValueError):
    """The text cannot be understood; the message tells the person what is allowed."""


class UnknownProviderError(CommandError):
    """A model name we do not run; the listener adds the names we do."""

    def __init__(self, word: str) -> None:
        super().__init__(f"`{word}` is not a provider here.")
        self.word = word


@dataclass(frozen=True)
class HelpCommand:
    pass


@dataclass(frozen=True)
class GenerateCommand:
    provider: str | None  # canonical provider name, or None for the default
    request: ImageRequest
    options: dict[str, str] = field(default_factory=dict)  # as typed, for the log


@dataclass(frozen=True)
class CompareCommand:
    """The same request to every configured provider, posted side by side and blind."""

    request: ImageRequest
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaderboardCommand:
    blind_only: bool = False
    since_seconds: int | None = None
    here: bool = False
    post: bool = False  # in the channel, for everyone, instead of only to the requester


@dataclass(frozen=True)
class UsageCommand:
    """`/imagine usage`: the person's pictures and cost (an admin's: the team's too)."""


Command = HelpCommand | GenerateCommand | CompareCommand | LeaderboardCommand | UsageCommand
USAGE_WORD = "usage"

_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def unescape_slack(text: str) -> str:
    """Turn Slack's escaped command text back into what the person typed and saw."""

    def readable(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@U", "@W", "@B")):
            return f"@{label}" if label else target
        if target.startswith("#C") or target.startswith("#G"):
            return f"#{label}" if label else target
        if target.startswith("!subteam^"):
            return f"@{label}" if label else "@group"
        if target.startswith("!"):
            return f"@{label or target[1:].split('^')[0]}"
        return label or target.removeprefix("mailto:")

    return html.unescape(_LINK.sub(readable, text))


def _int_option(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise CommandError(f"`--{name}` needs a whole number from {low} to {high}.") from None
        if not low <= number <= high:
            raise CommandError(f"`--{name}` must be from {low} to {high}; you gave {number}.")
        return number

    return parse


def _choice_option(name: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.lower()
        if value not in choices:
            raise CommandError(f"`--{name}` must be one of {', '.join(choices)}.")
        return value

    return parse


# option name (and aliases) -> (ImageRequest field, parser)
_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "n": ("n", _int_option("n", 1, MAX_IMAGES)),
    "ar": ("aspect_ratio", _choice_option("ar", ASPECT_RATIOS)),
    "no": ("negative_prompt", str),
    "seed": ("seed", _int_option("seed", 0, 2**32 - 1)),
    "quality": ("quality", _choice_option("quality", QUALITIES)),
    "style": ("style", _choice_option("style", STYLES)),
}
_ALIASES = {"aspect": "ar", "neg": "no", "q": "quality"}


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """`prompt --a 1 --no x y` -> ("prompt", {"a": "1", "no": "x y"}).

    Slack clients turn `--` into an em dash as people type, so `—` counts as `--`.
    """
    words = text.replace("\u2014", "--").split()
    prompt: list[str] = []
    options: dict[str, str] = {}
    current: str | None = None
    for word in words:
        if word.startswith("--") and len(word) > 2:
            name, _, inline = word[2:].partition("=")
            current = _ALIASES.get(name.lower(), name.lower())
            if current in options:
                raise CommandError(f"`--{name}` is given twice.")
            options[current] = inline
        elif current is None:
            prompt.append(word)
        else:
            options[current] = f"{options[current]} {word}".strip()
    return " ".join(prompt), options


def parse_command(text: str, resolve_provider: Callable[[str], str | None]) -> Command:
    """Parse the text after `/imagine`. Raises CommandError with a message for the person.

    Line breaks and tabs separate words like spaces; control characters are dropped."""
    text = clean_text(unescape_slack(text))
    if not text or text.split()[0].lower() in HELP_WORDS:
        return HelpCommand()
    first, _, rest = text.partition(" ")
    word = first.lower()
    if word in LEADERBOARD_WORDS:
        return parse_leaderboard(rest)
    if word == USAGE_WORD and not rest.strip():  # "usage of light in…" is still a prompt
        return UsageCommand()
    if word in COMPARE_WORDS:
        if not rest.strip():
            raise CommandError(
                f"Describe the picture to compare, e.g. `/imagine {word} a red fox`."
            )
        request, options = _parse_request(rest)
        return CompareCommand(request, options)
    provider = resolve_provider(first)
    if provider is None and first.lower() in OTHER_MODELS and rest.strip():
        raise UnknownProviderError(first)
    body = rest if provider else text
    if provider and not rest.strip():
        raise CommandError(
            f"Describe the picture after `{first}`, e.g. `/imagine {first} a red fox`."
        )
    request, options = _parse_request(body)
    return GenerateCommand(provider, request, options)


def _parse_request(body: str) -> tuple[ImageRequest, dict[str, str]]:
    prompt, raw_options = split_options(body)
    values: dict[str, object] = {}
    for name, raw in raw_options.items():
        if name not in _OPTIONS:
            raise CommandError(f"Unknown option `--{name}`. Options: {OPTION_HELP}.")
        if not raw:
            raise CommandError(f"`--{name}` needs a value. Options: {OPTION_HELP}.")
        field_name, parse = _OPTIONS[name]
        values[field_name] = parse(raw)
    if not prompt:
        raise CommandError(
            "Describe the picture before the options, e.g. `/imagine a red fox --ar 16:9`."
        )
    return ImageRequest(prompt=prompt, **values), raw_options


_SINCE = re.compile(r"^(\d+)\s*([hdw])$")


def parse_leaderboard(text: str) -> LeaderboardCommand:
    """`--blind`, `--since 30d`, `--here`, `--post`: flags, in any order."""
    extra, options = split_options(text)
    if extra:
        raise CommandError(f"`leaderboard` takes only options: {LEADERBOARD_HELP}.")
    unknown = set(options) - {"blind", "since", "here", "post"}
    if unknown:
        raise CommandError(f"Unknown option `--{min(unknown)}`. Options: {LEADERBOARD_HELP}.")
    for flag in ("blind", "here", "post"):
        if options.get(flag):
            raise CommandError(f"`--{flag}` takes no value. Options: {LEADERBOARD_HELP}.")
    since = None
    if "since" in options:
        match = _SINCE.match(options["since"].lower())
        if not match or int(match.group(1)) == 0:
            raise CommandError("`--since` needs a period like `30d`, `12h` or `4w`.")
        since = int(match.group(1)) * {"h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]
    return LeaderboardCommand(
        blind_only="blind" in options,
        since_seconds=since,
        here="here" in options,
        post="post" in options,
    )


@dataclass(frozen=True)
class EditCommand:
    """A reply asking to edit a picture: `provider` when it started with one ("dalle3: …")."""

    prompt: str
    provider: str | None = None


_EDIT_PREFIX = re.compile(r"^\s*([A-Za-z][\w.-]*)\s*:\s*(.*)$", re.DOTALL)
_MENTION = re.compile(r"<@[UWB][A-Z0-9]+(?:\|[^>]*)?>")


def parse_edit(text: str, resolve_provider: Callable[[str], str | None]) -> EditCommand | None:
    """A thread reply's text as an edit; mentions of people (the bot) are dropped. None when
    nothing is left to draw. A prefix that names no provider ("note: …") is part of the words."""
    body = clean_text(unescape_slack(_MENTION.sub(" ", text)))
    provider = None
    match = _EDIT_PREFIX.match(body)
    if match and resolve_provider(match.group(1)):
        provider, body = resolve_provider(match.group(1)), match.group(2).strip()
    return EditCommand(body, provider) if body else None

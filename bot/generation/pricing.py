"""What a picture costs: the vendors' published prices, per provider, model, quality and size.

Where the API reports the tokens it billed (gpt-image's `usage`, Gemini's `usageMetadata`) the
cost is computed from them; otherwise from the per-image price. `IMAGINE_PRICES` (JSON, same
shape as `BUILT_IN`) replaces a model's entry or adds one, so a deployment with its own
contract, or a model released after this table, is priced right without a release.

Read 2026-11-27; the README's "Cost, limits and usage" says where each figure comes from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANY = "*"

# provider -> model -> {"per_image": {"quality/size": USD}, "input_per_million": USD,
# "output_per_million": USD}. Sizes are OpenAI's; Google's prices do not depend on the ratio.
BUILT_IN: dict[str, dict[str, dict[str, Any]]] = {
    "imagen": {
        "gemini-3.1-flash-image": {
            "per_image": {"*/*": 0.067},
            "input_per_million": 0.50,
            "output_per_million": 60.0,
        },
        "gemini-3-pro-image": {
            "per_image": {"*/*": 0.134},
            "input_per_million": 2.0,
            "output_per_million": 120.0,
        },
        "gemini-2.5-flash-image": {
            "per_image": {"*/*": 0.039},
            "input_per_million": 0.30,
            "output_per_million": 30.0,
        },
        "imagen-4.0-fast-generate": {"per_image": {"*/*": 0.02}},
        "imagen-4.0-ultra-generate": {"per_image": {"*/*": 0.06}},
        "imagen-4.0-generate": {"per_image": {"*/*": 0.04}},
        "imagen-3.0": {"per_image": {"*/*": 0.03}},
    },
    "dalle3": {
        "gpt-image-2": {
            "per_image": {
                "low/1024x1024": 0.008, "low/*": 0.012,
                "medium/1024x1024": 0.032, "medium/*": 0.048,
                "high/1024x1024": 0.125, "high/*": 0.187,
                "*/*": 0.032,
            },
            "input_per_million": 5.0,
            "output_per_million": 30.0,
        },
        "gpt-image-1.5": {
            "per_image": {
                "low/1024x1024": 0.009, "low/*": 0.013,
                "medium/1024x1024": 0.034, "medium/*": 0.05,
                "high/1024x1024": 0.133, "high/*": 0.2,
                "*/*": 0.034,
            },
            "input_per_million": 5.0,
            "output_per_million": 32.0,
        },
        "gpt-image-1-mini": {
            "per_image": {
                "low/1024x1024": 0.005, "low/*": 0.006,
                "medium/1024x1024": 0.011, "medium/*": 0.015,
                "high/1024x1024": 0.036, "high/*": 0.052,
                "*/*": 0.011,
            },
            "input_per_million": 2.0,
            "output_per_million": 8.0,
        },
        "gpt-image-1": {
            "per_image": {
                "low/1024x1024": 0.011, "low/*": 0.016,
                "medium/1024x1024": 0.042, "medium/*": 0.063,
                "high/1024x1024": 0.167, "high/*": 0.25,
                "*/*": 0.042,
            },
            "input_per_million": 5.0,
            "output_per_million": 40.0,
        },
        "dall-e-3": {
            "per_image": {
                "standard/1024x1024": 0.04, "standard/*": 0.08,
                "hd/1024x1024": 0.08, "hd/*": 0.12,
                "*/*": 0.04,
            },
        },
    },
}  # fmt: skip
FIELDS = ("per_image", "input_per_million", "output_per_million")


class PriceError(ValueError):
    """IMAGINE_PRICES is not a price table; the message says what is wrong (after the name)."""


@dataclass(frozen=True)
class TokenUsage:
    """Tokens a provider reports it billed for one result (all its calls added up)."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceError(f"has {where} = {value!r}; prices are numbers of US dollars")
    if value < 0 or not math.isfinite(value):
        raise PriceError(f"has {where} = {value!r}; prices cannot be negative")
    return float(value)


def parse_prices(text: str) -> dict[str, dict[str, dict[str, Any]]]:
    """IMAGINE_PRICES as JSON, checked: {provider: {model: {per_image: {"quality/size": USD},
    input_per_million: USD, output_per_million: USD}}}. Empty text: no overrides."""
    if not text.strip():
        return {}
    try:
        table = json.loads(text)
    except json.JSONDecodeError as err:
        raise PriceError(f"is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(table, dict):
        raise PriceError("must be a JSON object of providers")
    checked: dict[str, dict[str, dict[str, Any]]] = {}
    for provider, models in table.items():
        if not isinstance(models, dict):
            raise PriceError(f"has {provider!r} = {models!r}; a provider maps model ids to prices")
        for model, entry in models.items():
            where = f"{provider}.{model}"
            if not isinstance(entry, dict) or not entry or set(entry) - set(FIELDS):
                raise PriceError(f"has {where} = {entry!r}; a model takes {', '.join(FIELDS)}")
            kept: dict[str, Any] = {}
            per_image = entry.get("per_image", {})
            if not isinstance(per_image, dict):
                raise PriceError(f"has {where}.per_image = {per_image!r}; map quality/size to USD")
            for key in per_image:
                if key.count("/") != 1:
                    raise PriceError(f"has {where}.per_image key {key!r}; write quality/size")
            kept["per_image"] = {
                k: _price(v, f"{where}.per_image.{k}") for k, v in per_image.items()
            }
            for name in FIELDS[1:]:
                if name in entry:
                    kept[name] = _price(entry[name], f"{where}.{name}")
            checked.setdefault(str(provider), {})[str(model)] = kept
    return checked


class PriceTable:
    """The built-in prices with `overrides` (parsed IMAGINE_PRICES) laid over them."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None):
        self.table = {provider: dict(models) for provider, models in BUILT_IN.items()}
        for provider, models in (overrides or {}).items():
            self.table.setdefault(provider, {}).update(models)

    def entry(self, provider: str, model: str) -> Mapping[str, Any] | None:
        """The model's prices; a versioned id (`imagen-4.0-generate-001`, `gpt-image-2-2026-
        04-21`, `gemini-3-pro-image-preview`) takes the entry of its longest listed prefix."""
        models = self.table.get(provider, {})
        if model in models:
            return models[model]
        prefixes = [name for name in models if model.startswith(name)]
        return models[max(prefixes, key=len)] if prefixes else None

    def per_image(self, provider: str, model: str, quality: str | None, size: str | None):
        """USD for one picture of that quality and size, or None when not priced."""
        entry = self.entry(provider, model)
        if entry is None:
            return None
        prices = entry.get("per_image") or {}
        q, s = (quality or ANY).lower(), (size or ANY).lower()
        for key in (f"{q}/{s}", f"{q}/{ANY}", f"{ANY}/{s}", f"{ANY}/{ANY}"):
            if key in prices:
                return prices[key]
        return None

    def cost(
        self,
        provider: str,
        model: str,
        *,
        images: int,
        quality: str | None = None,
        size: str | None = None,
        usage: TokenUsage | None = None,
    ) -> float | None:
        """What the provider bills for a result: from its reported tokens when the model has
        token prices, else per picture; None when the model is not in the table."""
        entry = self.entry(provider, model)
        if entry is None:
            return None
        if usage is not None and "output_per_million" in entry:
            billed = usage.input_tokens * entry.get("input_per_million", 0.0)
            billed += usage.output_tokens * entry["output_per_million"]
            return round(billed / 1_000_000, 6)
        price = self.per_image(provider, model, quality, size)
        return None if price is None else round(price * images, 6)

"""`python -m bot generate` and `python -m bot check`: the service without Slack.

These are how an operator tries credentials and prompts before installing the Slack app;
they print one line per fact and never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.config import Config
from bot.generation.service import GenerationService
from bot.generation.stores.directory import DirectoryImageStore
from bot.generation.types import ASPECT_RATIOS, MAX_IMAGES, ImageRequest, ImagineError


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="+", help="what to draw")
    parser.add_argument(
        "--provider",
        "-p",
        action="append",
        help="provider name or alias; repeat to compare (default: IMAGINE_DEFAULT_PROVIDER, "
        "else the first configured one)",
    )
    parser.add_argument("--n", type=int, default=1, help=f"images per provider, 1-{MAX_IMAGES}")
    parser.add_argument("--aspect", "--ar", default="1:1", choices=ASPECT_RATIOS)
    parser.add_argument("--no", dest="negative_prompt", help="what to leave out")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--quality", help="e.g. standard|hd (DALL-E 3), low|medium|high")
    parser.add_argument("--style", help="vivid|natural (DALL-E 3)")
    parser.add_argument("--out", help="write the images into this directory instead of GCS")


def run_generate(
    args: argparse.Namespace, config: Config, service: GenerationService, out: TextIO = sys.stdout
) -> int:
    request = ImageRequest(
        prompt=" ".join(args.prompt).strip(),
        n=args.n,
        aspect_ratio=args.aspect,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        quality=args.quality,
        style=args.style,
    )
    providers = args.provider or default_providers(config, service)
    try:
        service.validate(request, providers)  # what to draw, and with what, comes first
    except ImagineError as err:
        print(f"error: {err.message}", file=out)
        return 2
    if args.out:
        store = DirectoryImageStore(args.out)
    elif service.store is None:
        print(
            "error: GCS_BUCKET is not set: set it, or pass --out DIR to save the images.", file=out
        )
        return 2
    else:
        store = service.store
    try:
        results = service.generate(request, providers, store=store)
    except ImagineError as err:
        print(f"error: {err.message}", file=out)
        return 2
    status = 0
    for result in results:
        if result.error:
            print(f"{result.provider}: {result.error.message}", file=out)
            status = 1
            continue
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
        print(f"{result.provider} ({result.model}) {timing}", file=out)
        if result.revised_prompt:
            print(f"  revised prompt: {result.revised_prompt}", file=out)
        for note in result.notes:
            print(f"  note: {note}", file=out)
        for image in result.images:
            print(f"  {image.url}", file=out)
    return status


def default_providers(config: Config, service: GenerationService) -> list[str]:
    if config.default_provider:
        return [config.default_provider]
    configured = service.configured_providers()
    return configured[:1]


def run_check(config: Config, service: GenerationService, out: TextIO = sys.stdout) -> int:
    """One line per provider and for the store: configured or not, and a live call.

    Exits 1 when no provider is configured or a live call fails, so scripts can rely on it.
    """
    status = 0 if service.configured_providers() else 1
    width = max(len(name) for name in [*service.providers, "store"])
    for name, provider in service.providers.items():
        missing = provider.missing_settings()
        if missing:
            print(f"{name:<{width}}  not configured: set {', '.join(missing)}", file=out)
            continue
        status |= _live(name, width, provider.check, out)
    if service.store is None:
        print(f"{'store':<{width}}  no GCS_BUCKET: Slack uploads the images itself", file=out)
    else:
        status |= _live("store", width, service.store.check, out)
    return status


def _live(name: str, width: int, call, out: TextIO) -> int:
    try:
        detail = call()
    except ImagineError as err:
        print(f"{name:<{width}}  configured, but the check failed: {err.message}", file=out)
        return 1
    except Exception as err:  # the operator needs one line, not a traceback
        print(f"{name:<{width}}  configured, but the check failed: {type(err).__name__}", file=out)
        return 1
    print(f"{name:<{width}}  ok: {detail}", file=out)
    return 0


def main_generate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot generate")
    add_generate_arguments(parser)
    args = parser.parse_args(argv)
    config = Config.from_env()
    return run_generate(args, config, GenerationService.from_config(config))


def main_check() -> int:
    config = Config.from_env()
    return run_check(config, GenerationService.from_config(config))

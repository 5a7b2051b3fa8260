"""`dalle3`: OpenAI's image models, on Azure OpenAI or on OpenAI itself.

The user-facing name comes from the prototype (DALL·E 3 on Azure); the model id is
configuration (`OPENAI_IMAGE_MODEL`), and two request shapes are spoken: DALL·E 3 (one image
per call, URL answers, `standard|hd`, styles) and the gpt-image family (n per call, always
base64, `low|medium|high|auto`; gpt-image-2 and later on OpenAI take any size whose sides are
multiples of 16, so every aspect ratio is drawn exactly). Options a model cannot honour are
approximated and reported in notes, never silently dropped. One SDK client per process serves
every thread.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import openai

from bot import metrics
from bot.config import Config, OpenAIConfig, RetryConfig
from bot.generation.pacing import submit_in_context
from bot.generation.previews import PreviewSink, current_previews
from bot.generation.pricing import TokenUsage
from bot.generation.providers.base import ImageProvider, decode_image
from bot.generation.providers.oauth_token import ClientCredentialsToken
from bot.generation.retry import next_wait, retry_after_seconds
from bot.generation.types import (
    ASPECT_RATIOS,
    MAX_IMAGES,
    ConfigurationError,
    ContentPolicyError,
    GeneratedImage,
    ImageRequest,
    ImagineError,
    InvalidRequestError,
    ProviderOutput,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)

T = TypeVar("T")

TOKEN_SETTINGS = ("AZURE_OPENAI_TOKEN_URL", "AZURE_OPENAI_CLIENT_ID", "AZURE_OPENAI_CLIENT_SECRET")
CONTENT_POLICY_CODES = {"content_policy_violation", "moderation_blocked", "contentfilter"}
# Azure's words when the picture was drawn and then filtered (400 `contentFilter`), as opposed
# to a prompt refused before drawing ("Your task failed..." / content_policy_violation).
OUTPUT_FILTERED = "generated image was filtered"
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
MIME_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
MAX_MESSAGE_CHARS = 200
CLIENTS = 8  # SDK clients (connection pools) the calls are spread over
# Azure OpenAI streams image generation (`stream`, `partial_images`) from this API version on;
# with an older one the picture is drawn with a plain call, without previews.
AZURE_STREAMING_SINCE = "2025-04-01"
_API_VERSION_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
PARTIAL_IMAGE = "image_generation.partial_image"
COMPLETED = "image_generation.completed"


def azure_streams(api_version: str) -> bool:
    """Whether an Azure OpenAI API version (`2025-04-01-preview`) streams image generation."""
    dated = _API_VERSION_DATE.match(api_version or "")
    return dated is not None and dated.group(1) >= AZURE_STREAMING_SINCE


# --------------------------------------------------------------------------------------
# Model families and option mapping (pure: no I/O)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily:
    """What one family of OpenAI image models accepts."""

    name: str
    sizes: dict[str, str]  # aspect ratio -> size
    qualities: tuple[str, ...]  # "auto" among them: the API's own default, sent as asked
    quality_aliases: dict[str, str]  # other vocabularies -> ours
    styles: tuple[str, ...]  # empty: no style option
    images_per_call: int
    max_prompt_chars: int
    url_answers: bool  # takes response_format (url|b64_json)


DALLE3 = ModelFamily(
    name="DALL·E 3",
    sizes={
        "1:1": "1024x1024",
        "16:9": "1792x1024",
        "4:3": "1792x1024",
        "9:16": "1024x1792",
        "3:4": "1024x1792",
    },
    qualities=("standard", "hd"),
    quality_aliases={"high": "hd", "low": "standard", "medium": "standard"},
    styles=("vivid", "natural"),
    images_per_call=1,
    max_prompt_chars=4000,
    url_answers=True,
)
GPT_IMAGE = ModelFamily(
    name="gpt-image",
    sizes={
        "1:1": "1024x1024",
        "16:9": "1536x1024",
        "4:3": "1536x1024",
        "9:16": "1024x1536",
        "3:4": "1024x1536",
    },
    qualities=("low", "medium", "high", "auto"),
    quality_aliases={"hd": "high", "standard": "medium"},
    styles=(),
    images_per_call=MAX_IMAGES,
    max_prompt_chars=32000,
    url_answers=False,
)
# gpt-image-2 and later on OpenAI: any WIDTHxHEIGHT with both sides multiples of 16, sides
# at most 3840, 655,360 to 8,294,400 pixels, ratio within 3:1. Exact ratios, long side 1536
# like the fixed landscape size. Azure deployments keep the fixed sizes of GPT_IMAGE.
GPT_IMAGE_FLEXIBLE = replace(
    GPT_IMAGE,
    name="gpt-image (flexible sizes)",
    sizes={
        "1:1": "1024x1024",
        "16:9": "1536x864",
        "4:3": "1536x1152",
        "9:16": "864x1536",
        "3:4": "1152x1536",
    },
)
_GPT_IMAGE_VERSION = re.compile(r"^(?:chatgpt-)?gpt-image-(\d+(?:\.\d+)?)")


def family_for(model: str, *, azure: bool = False) -> ModelFamily:
    """DALL·E 3 ids get the DALL·E 3 shape; everything else (gpt-image-*, chatgpt-image-*) the
    gpt-image one, with flexible sizes for gpt-image-2 and later on OpenAI itself."""
    lowered = model.lower()
    if lowered.startswith(("dall-e-3", "dalle3", "dall-e3")):
        return DALLE3
    version = _GPT_IMAGE_VERSION.match(lowered)
    if not azure and version and float(version.group(1)) >= 2:
        return GPT_IMAGE_FLEXIBLE
    return GPT_IMAGE


@dataclass
class CallPlan:
    """The keyword arguments of one `images.generate` call, how many to make, and notes."""

    params: dict[str, Any]
    calls: int = 1
    notes: list[str] = field(default_factory=list)


def _ratio(text: str, sep: str) -> float:
    width, height = (float(part) for part in text.split(sep))
    return width / height


def plan_request(
    request: ImageRequest, model: str, family: ModelFamily, *, response_format: str = "url"
) -> CallPlan:
    """Map an ImageRequest onto one model family; raise InvalidRequestError when impossible."""
    if request.aspect_ratio not in ASPECT_RATIOS:
        raise InvalidRequestError(
            f"Aspect ratio must be one of {', '.join(ASPECT_RATIOS)}, not '{request.aspect_ratio}'."
        )
    if not 1 <= request.n <= MAX_IMAGES:
        raise InvalidRequestError(f"Ask for 1 to {MAX_IMAGES} images, not {request.n}.")
    prompt = request.prompt.strip()
    if not prompt:
        raise InvalidRequestError("The prompt is empty; describe the picture you want.")
    notes: list[str] = []
    if request.negative_prompt and request.negative_prompt.strip():
        avoid = request.negative_prompt.strip().rstrip(".")
        prompt = f"{prompt}{'' if prompt.endswith(('.', '!', '?')) else '.'} Avoid: {avoid}."
        notes.append(f"{model} has no negative prompt; added “Avoid: {avoid}” to the prompt.")
    if len(prompt) > family.max_prompt_chars:
        raise InvalidRequestError(
            f"The prompt is {len(prompt)} characters (with any negative prompt); {model} "
            f"accepts at most {family.max_prompt_chars}."
        )
    if request.seed is not None:
        notes.append(f"{model} does not take a seed; seed {request.seed} was ignored.")

    size = family.sizes[request.aspect_ratio]
    wanted, drawn = _ratio(request.aspect_ratio, ":"), _ratio(size, "x")
    if abs(drawn - wanted) / wanted > 0.05:
        notes.append(f"{model} has no {request.aspect_ratio} size; drew {size} instead.")
    params: dict[str, Any] = {"prompt": prompt, "size": size}

    if request.quality:
        quality = request.quality.strip().lower()
        if quality in family.qualities:
            params["quality"] = quality
        elif quality == "auto":
            pass  # the API's default: leaving it out is asking for it
        elif quality in family.quality_aliases:
            params["quality"] = family.quality_aliases[quality]
            notes.append(f"{model} has no '{quality}' quality; used '{params['quality']}'.")
        else:
            raise InvalidRequestError(
                f"Quality for {model} must be one of {', '.join(family.qualities)}, "
                f"not '{request.quality}'."
            )
    if request.style:
        style = request.style.strip().lower()
        if not family.styles:
            notes.append(f"{model} has no style option; style '{style}' was ignored.")
        elif style in family.styles:
            params["style"] = style
        else:
            raise InvalidRequestError(
                f"Style for {model} must be one of {', '.join(family.styles)}, "
                f"not '{request.style}'."
            )
    if family.url_answers:
        params["response_format"] = response_format
    calls = 1
    if request.n <= family.images_per_call:
        params["n"] = request.n
    else:  # DALL·E 3 draws one image per call: n calls, run concurrently
        params["n"] = 1
        calls = request.n
    return CallPlan(params=params, calls=calls, notes=notes)


# --------------------------------------------------------------------------------------
# Reading answers and errors
# --------------------------------------------------------------------------------------


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None) or getattr(obj, "dict", None)
    return dump() if dump else {}


def filtered_categories(results: Any) -> list[str]:
    """Azure content_filter_results -> ["violence (medium)", "jailbreak"]."""
    names = []
    if isinstance(results, dict):
        for category, verdict in results.items():
            if isinstance(verdict, dict) and verdict.get("filtered"):
                label = str(category).replace("_", "-")
                severity = verdict.get("severity")
                names.append(f"{label} ({severity})" if severity else label)
    return names


def _trim(text: str, secrets: tuple[str, ...]) -> str:
    text = " ".join(str(text).split())
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _transient(err: openai.APIError) -> bool:
    """Worth another try: a lost connection (not a timeout) or a 5xx."""
    if isinstance(err, openai.APITimeoutError):
        return False
    if isinstance(err, openai.APIConnectionError):
        return True
    return isinstance(err, openai.APIStatusError) and err.status_code >= 500


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "in a minute"
    if seconds < 90:
        return f"in about {max(1, math.ceil(seconds))} seconds"
    return f"in about {math.ceil(seconds / 60)} minutes"


@dataclass
class _Batch:
    images: list[GeneratedImage]
    revised_prompt: str | None
    withheld: int = 0
    reasons: list[str] = field(default_factory=list)
    damaged: int = 0  # b64_json that did not decode
    usage: TokenUsage | None = None  # gpt-image's `usage`: the tokens billed for this call


def reported_usage(usage: Any) -> TokenUsage | None:
    """gpt-image's `usage` ({input_tokens, output_tokens, ...}); DALL·E reports none."""
    usage = _as_dict(usage) if usage is not None else None
    if not usage or not isinstance(usage.get("output_tokens"), int):
        return None
    return TokenUsage(int(usage.get("input_tokens") or 0), int(usage["output_tokens"]))


def _billing(batches: list[_Batch], plan: CallPlan) -> dict[str, Any]:
    """What the cost is computed from: the calls' tokens added up (when every call reported
    them), else the quality and size asked for."""
    usages = [b.usage for b in batches]
    usage = None
    if usages and all(u is not None for u in usages):
        usage = sum((u for u in usages if u is not None), TokenUsage())
    return {
        "usage": usage,
        "quality": plan.params.get("quality"),
        "size": plan.params.get("size"),
    }


# --------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------


class OpenAIImageProvider(ImageProvider):
    """OpenAI image models through one reusable SDK client (Azure OpenAI or OpenAI)."""

    name = "dalle3"
    aliases = ("dalle", "dall-e", "openai", "gpt-image")
    label = "OpenAI"

    def __init__(
        self,
        settings: OpenAIConfig,
        retry: RetryConfig | None = None,
        *,
        response_format: str = "url",
        max_workers: int = 32,
    ) -> None:
        self._settings = settings
        self._retry = retry or RetryConfig()
        self._azure = bool(settings.azure_endpoint)
        self._family = family_for(settings.model, azure=self._azure)
        self.max_prompt_chars = self._family.max_prompt_chars  # type: ignore[misc]
        self._response_format = response_format
        self._max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._tokens: ClientCredentialsToken | None = None
        self._clients: Iterator[openai.OpenAI] | None = None
        if not self.missing_settings():
            self._clients = itertools.cycle(self._build_clients())

    @classmethod
    def from_config(cls, config: Config) -> OpenAIImageProvider:
        return cls(config.openai, config.retry)

    # -- configuration ------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._settings.model

    @property
    def requests_per_minute(self) -> float | None:
        return self._settings.requests_per_minute  # OPENAI_REQUESTS_PER_MINUTE

    @property
    def mode(self) -> str:
        """Who serves the model: "Azure OpenAI" or "OpenAI"."""
        return "Azure OpenAI" if self._azure else "OpenAI"

    @property
    def uses_client_credentials(self) -> bool:
        return self._azure and not self._settings.azure_api_key

    def missing_settings(self) -> list[str]:
        s = self._settings
        if not s.azure_endpoint:
            return [] if s.api_key else ["AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY"]
        missing = [] if s.azure_deployment else ["AZURE_OPENAI_IMAGE_DEPLOYMENT"]
        if not s.azure_api_key:
            values = (s.azure_token_url, s.azure_client_id, s.azure_client_secret)
            absent = [name for name, value in zip(TOKEN_SETTINGS, values, strict=True) if not value]
            if len(absent) == len(TOKEN_SETTINGS):
                missing.append("AZURE_OPENAI_API_KEY (or " + ", ".join(TOKEN_SETTINGS) + ")")
            else:
                missing.extend(absent)
        return missing

    def _build_clients(self) -> list[openai.OpenAI]:
        """`CLIENTS` SDK clients taken in turn, sharing one TLS context: the HTTP library's
        connection pool scans all its connections whenever a call starts or ends, so one pool
        carrying hundreds of calls at once spends more CPU on that than on the calls."""
        settings = self._client_settings()
        sdk = openai.AzureOpenAI if self._azure else openai.OpenAI
        tls = httpx2.create_ssl_context()  # what each client would build (~30 ms CPU each)
        return [
            sdk(http_client=openai.DefaultHttpxClient(verify=tls), **settings)
            for _ in range(CLIENTS)
        ]

    def _client_settings(self) -> dict[str, Any]:
        s, retry = self._settings, self._retry
        # retries are ours (see `_call`): each one must pass the pacer
        common: dict[str, Any] = {"max_retries": 0, "timeout": retry.timeout}
        if not self._azure:
            return {"api_key": s.api_key, "base_url": s.base_url or None, **common}
        if s.azure_api_key:
            common["api_key"] = s.azure_api_key
        else:
            assert s.azure_token_url and s.azure_client_id and s.azure_client_secret
            self._tokens = ClientCredentialsToken(
                s.azure_token_url,
                s.azure_client_id,
                s.azure_client_secret,
                scope=s.azure_token_scope,
                timeout=min(retry.timeout, 30.0),
                provider=self.name,
            )
            if s.azure_token_header == "api-key":
                # gateways that take the token where Azure takes its key, asked per request
                common["api_key"] = self._tokens.get
            else:
                common["azure_ad_token_provider"] = self._tokens.get
        return {
            "azure_endpoint": s.azure_endpoint,
            "azure_deployment": s.azure_deployment,
            "api_version": s.api_version,
            **common,
        }

    def _client_or_raise(self) -> openai.OpenAI:
        if self._clients is None:
            missing = self.missing_settings()
            raise ConfigurationError(
                f"{self.mode} image generation is not configured; set {', '.join(missing)}.",
                setting=missing[0] if missing else None,
                provider=self.name,
            )
        return next(self._clients)

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="openai-images"
                )
            return self._executor

    # -- generation -----------------------------------------------------------------------
    def validate(self, request: ImageRequest) -> None:
        super().validate(request)
        plan_request(request, self.model, self._family, response_format=self._response_format)

    def generate(self, request: ImageRequest) -> ProviderOutput:
        client = self._client_or_raise()
        try:
            plan = plan_request(
                request, self.model, self._family, response_format=self._response_format
            )
        except InvalidRequestError as err:
            err.provider = self.name
            raise
        params = dict(plan.params)
        if not self._azure:
            params["model"] = self.model  # Azure: the deployment names the model
        elif self._settings.azure_app_key:  # a corporate gateway names the application here
            params["user"] = json.dumps({"appkey": self._settings.azure_app_key})

        sink = current_previews.get()
        if sink is not None and self._streams(plan):
            params.update(stream=True, partial_images=self._settings.partial_images)

            def once() -> _Batch:  # read inside the call: a stream that breaks is retried
                return self._call(lambda: self._read_stream(client.images.generate(**params), sink))
        else:

            def once() -> _Batch:
                return self._read(self._call(lambda: client.images.generate(**params)))

        started = time.monotonic()
        if plan.calls == 1:
            batches: list[_Batch | ImagineError] = [once()]
        else:
            futures = [submit_in_context(self._pool(), once) for _ in range(plan.calls)]
            batches = []
            for future in futures:
                try:
                    batches.append(future.result())
                except ImagineError as err:
                    batches.append(err)
        return self._combine(batches, plan, time.monotonic() - started)

    def _streams(self, plan: CallPlan) -> bool:
        """Previews are asked for when they can be shown as they come: a gpt-image model, one
        picture (the events carry no image index), OPENAI_PARTIAL_IMAGES above 0 and, on
        Azure, an API version that streams."""
        return (
            self._family is not DALLE3
            and plan.calls == 1
            and plan.params.get("n") == 1
            and self._settings.partial_images > 0
            and (not self._azure or azure_streams(self._settings.api_version))
        )

    def _read_stream(self, stream: Any, sink: PreviewSink) -> _Batch:
        """Server-sent events: each partial image to `sink` as it arrives, then the picture."""
        batch = _Batch(images=[], revised_prompt=None)
        finished = False
        with stream:
            for event in stream:
                payload = _as_dict(event)
                kind = payload.get("type")
                mime = MIME_TYPES.get(str(payload.get("output_format") or "png").lower())
                data = decode_image(payload.get("b64_json"))
                if kind == PARTIAL_IMAGE and data is not None:
                    index = payload.get("partial_image_index")
                    sink(self.name, GeneratedImage(data, mime or "image/png"), int(index or 0))
                elif kind == COMPLETED:
                    finished = True
                    if data is None:
                        batch.damaged += 1
                    else:
                        batch.images.append(GeneratedImage(data, mime or "image/png"))
        if not finished:
            raise ProviderUnavailableError(
                f"{self.mode} stopped before the picture was finished; try again.",
                provider=self.name,
            )
        return batch

    # -- edits: `images/edits` (multipart) with a gpt-image model ---------------------------
    max_edit_bytes = 50 * 1024 * 1024  # gpt-image models: each input image under 50 MB

    @property
    def can_edit(self) -> bool:
        return self._family is not DALLE3

    def edit_hint(self) -> str:
        setting = "AZURE_OPENAI_IMAGE_DEPLOYMENT" if self._azure else "OPENAI_IMAGE_MODEL"
        return f"set {setting} to a gpt-image model such as gpt-image-1"

    def edit(self, prompt: str, image: bytes, mime_type: str) -> ProviderOutput:
        if not self.can_edit:
            return super().edit(prompt, image, mime_type)
        client = self._client_or_raise()
        params: dict[str, Any] = {
            "image": (f"picture.{MIME_EXTENSIONS.get(mime_type, 'png')}", image, mime_type),
            "prompt": prompt,
            "n": 1,
        }
        if not self._azure:
            params["model"] = self.model
        started = time.monotonic()
        batch = self._read(self._call(lambda: client.images.edit(**params)))
        return self._combine([batch], CallPlan(params={}), time.monotonic() - started)

    def _combine(
        self, batches: list[_Batch | ImagineError], plan: CallPlan, seconds: float
    ) -> ProviderOutput:
        good = [b for b in batches if isinstance(b, _Batch)]
        errors = [b for b in batches if isinstance(b, ImagineError)]
        images = [image for batch in good for image in batch.images]
        reasons = sorted({r for batch in good for r in batch.reasons})
        withheld = sum(batch.withheld for batch in good)
        damaged = sum(batch.damaged for batch in good)
        if not images:
            if errors:
                raise errors[0]
            if damaged and not withheld:
                raise ProviderUnavailableError(
                    f"{self.mode} sent image data we could not decode; try again.",
                    provider=self.name,
                )
            reason = ", ".join(reasons) or None
            drawn = "the pictures" if withheld > 1 else "the picture"
            raise ContentPolicyError(
                f"{self.mode} drew {drawn} but its content filter withheld "
                f"{'them' if withheld > 1 else 'it'}{f' ({reason})' if reason else ''}; the "
                "prompt itself was accepted, so try again or rephrase it.",
                reason=reason or "content_filter",
                provider=self.name,
                stage="image",
            )
        notes = list(plan.notes)
        total = len(images) + withheld + damaged + len(errors)
        if withheld:
            why = f" ({', '.join(reasons)})" if reasons else ""
            notes.append(f"{withheld} of {total} images withheld by the content filter{why}.")
        if damaged:
            notes.append(f"{damaged} of {total} images left out: their data did not decode.")
        if errors:
            notes.append(f"{len(errors)} of {total} images failed: {errors[0].message}")
        revised = next((b.revised_prompt for b in good if b.revised_prompt), None)
        return ProviderOutput(
            images=images,
            model=self.model,
            revised_prompt=revised,
            notes=notes,
            seconds=seconds,
            **_billing(good, plan),
        )

    def _read(self, response: Any) -> _Batch:
        payload = _as_dict(response)
        mime = MIME_TYPES.get(str(payload.get("output_format") or "png").lower(), "image/png")
        batch = _Batch(images=[], revised_prompt=None)
        for entry in payload.get("data") or []:
            entry = _as_dict(entry)
            if batch.revised_prompt is None and entry.get("revised_prompt"):
                batch.revised_prompt = entry["revised_prompt"]
            if entry.get("b64_json"):
                data = decode_image(entry["b64_json"])
                if data is None:
                    batch.damaged += 1
                else:
                    batch.images.append(GeneratedImage(data=data, mime_type=mime))
            elif entry.get("url"):
                batch.images.append(GeneratedImage(url=entry["url"], mime_type="image/png"))
            else:
                batch.withheld += 1
                batch.reasons.extend(filtered_categories(entry.get("content_filter_results")))
        batch.usage = reported_usage(payload.get("usage"))
        return batch

    # -- calls and errors -----------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        """Run one SDK call, each attempt in its turn under OPENAI_REQUESTS_PER_MINUTE.

        We retry here rather than in the SDK (its max_retries is 0) so that every retry waits
        its turn at the pacer and a 429 is retried until the job's deadline: 429 after its
        Retry-After, 5xx and lost connections with backoff. With client credentials, a 401
        refreshes the token once."""
        attempt, refreshed = 0, False
        while True:
            self.pacer.wait_turn(self.name, retry=attempt > 0 or refreshed)
            token = self._tokens.get() if self._tokens else None  # token errors surface here
            try:
                return fn()
            except openai.AuthenticationError as err:
                if self._tokens is None or refreshed:
                    raise self._translate(err) from err
                self._tokens.invalidate(token)
                refreshed = True
                continue
            except openai.APIError as err:
                error = self._translate(err)
                throttled = isinstance(error, RateLimitError)
                if throttled:
                    metrics.THROTTLED.labels(self.name).inc()
                if not (throttled or _transient(err)):
                    raise error from err
                retry_after = error.retry_after if isinstance(error, RateLimitError) else None
                wait = next_wait(attempt, retry_after, self._retry, throttled=throttled)
                if wait is None:
                    raise error from err
            time.sleep(wait)
            attempt += 1

    def _credential_settings(self) -> str:
        if not self._azure:
            return "OPENAI_API_KEY"
        if self._tokens is not None:
            return "AZURE_OPENAI_CLIENT_ID, AZURE_OPENAI_CLIENT_SECRET and AZURE_OPENAI_TOKEN_URL"
        return "AZURE_OPENAI_API_KEY"

    def _secrets(self) -> tuple[str, ...]:
        s = self._settings
        values = (s.azure_api_key, s.api_key, s.azure_client_secret, s.azure_app_key)
        return tuple(v for v in values if v)

    def _translate(self, err: openai.APIError) -> ImagineError:
        """An SDK error -> one sentence naming the setting to check (never its value)."""
        mode, name = self.mode, self.name
        if isinstance(err, openai.APITimeoutError):
            return ProviderTimeoutError(
                f"{mode} did not answer within {self._retry.timeout:g} seconds; try again "
                "(IMAGINE_PROVIDER_TIMEOUT sets the limit).",
                provider=name,
            )
        if isinstance(err, openai.APIConnectionError):
            setting = "AZURE_OPENAI_ENDPOINT" if self._azure else "OPENAI_BASE_URL"
            return ProviderUnavailableError(
                f"Could not reach {mode}; check {setting} or try again later.", provider=name
            )
        if not isinstance(err, openai.APIStatusError):
            return self._stream_error(err)
        body = err.body if isinstance(err.body, dict) else {}
        code = str(body.get("code") or err.code or "")
        message = _trim(body.get("message") or "", self._secrets())
        status = err.status_code
        if status == 400:
            inner = body.get("inner_error") or body.get("innererror") or {}
            inner = inner if isinstance(inner, dict) else {}
            inner_code = str(inner.get("code") or "")
            if (
                code.lower() in CONTENT_POLICY_CODES
                or inner_code == "ResponsibleAIPolicyViolation"
                or filtered_categories(inner.get("content_filter_results"))
            ):
                categories = filtered_categories(inner.get("content_filter_results"))
                reason = ", ".join(categories) or code or inner_code
                why = f" ({', '.join(categories)})" if categories else ""
                if OUTPUT_FILTERED in str(body.get("message") or "").lower():
                    return ContentPolicyError(
                        f"{mode} drew the picture but its content filter withheld it{why}; "
                        "the prompt itself was accepted, so try again or rephrase it.",
                        reason=reason,
                        provider=name,
                        stage="image",
                    )
                return ContentPolicyError(
                    f"{mode}'s safety system refused this prompt{why}; try rephrasing it.",
                    reason=reason,
                    provider=name,
                    stage="prompt",
                )
            return InvalidRequestError(
                f"{mode} rejected the request: {message or 'HTTP 400'}", provider=name
            )
        if status == 401:
            settings = self._credential_settings()
            what = "the token from AZURE_OPENAI_TOKEN_URL" if self._tokens else "the API key"
            return ConfigurationError(
                f"{mode} refused {what}; check {settings}.",
                setting=settings.split(",")[0],
                provider=name,
            )
        if status == 403:
            settings = self._credential_settings()
            target = (
                f"deployment '{self._settings.azure_deployment}'" if self._azure else self.model
            )
            if self._tokens is not None:  # a gateway: it may also check the application key
                settings = settings.replace(" and ", ", ") + " and AZURE_OPENAI_APP_KEY"
            return ConfigurationError(
                f"{mode} denied access to {target}; check {settings} and its permissions.",
                setting=settings.split(",")[0],
                provider=name,
            )
        if status == 404:
            return self._not_found(code)
        if status == 429:
            headers = dict(err.response.headers.items())
            wait = retry_after_seconds(headers)
            return RateLimitError(
                f"{mode} is rate limiting image requests; try again {_when(wait)}.",
                retry_after=wait,
                provider=name,
            )
        if status >= 500:
            return ProviderUnavailableError(
                f"{mode} kept failing (HTTP {status}); try again later.", provider=name
            )
        return InvalidRequestError(
            f"{mode} rejected the request: {message or f'HTTP {status}'}", provider=name
        )

    def _stream_error(self, err: openai.APIError) -> ImagineError:
        """An `error` event in the middle of a stream (no HTTP status: the answer had begun)."""
        mode, name = self.mode, self.name
        body = err.body if isinstance(err.body, dict) else {}
        code = str(body.get("code") or "")
        message = _trim(body.get("message") or "", self._secrets())
        if code.lower() in CONTENT_POLICY_CODES:
            return ContentPolicyError(
                f"{mode} stopped drawing: its safety system refused the picture"
                f"{f' ({message})' if message else ''}; try rephrasing the prompt.",
                reason=code,
                provider=name,
                stage="image",
            )
        if body:
            return ProviderUnavailableError(
                f"{mode} failed while drawing{f': {message}' if message else ''}; try again.",
                provider=name,
            )
        return ProviderUnavailableError(
            f"{mode} gave an answer we could not read; try again later.", provider=name
        )

    def _not_found(self, code: str) -> ConfigurationError:
        mode, name = self.mode, self.name
        if code == "DeploymentNotFound":
            return ConfigurationError(
                f"{mode} has no deployment '{self._settings.azure_deployment}'; "
                "check AZURE_OPENAI_IMAGE_DEPLOYMENT.",
                setting="AZURE_OPENAI_IMAGE_DEPLOYMENT",
                provider=name,
            )
        if code == "model_not_found":
            retired = (
                " (DALL·E 3 is retired: use a gpt-image model such as gpt-image-2)"
                if self._family is DALLE3
                else ""
            )
            return ConfigurationError(
                f"{mode} does not serve the model '{self.model}'{retired}; "
                "check OPENAI_IMAGE_MODEL.",
                setting="OPENAI_IMAGE_MODEL",
                provider=name,
            )
        settings = (
            "AZURE_OPENAI_ENDPOINT and OPENAI_API_VERSION" if self._azure else "OPENAI_BASE_URL"
        )
        return ConfigurationError(
            f"{mode} answered 404 (not found); check {settings}.",
            setting=settings.split(" ")[0],
            provider=name,
        )

    # -- health ---------------------------------------------------------------------------
    def check(self) -> str:
        """Azure: list models at the resource (`GET {endpoint}/openai/models`); OpenAI: get one."""
        client = self._client_or_raise()
        s = self._settings
        if self._azure:
            self._call(lambda: client.models.list())
            host = urlsplit(s.azure_endpoint or "").netloc
            return (
                f"Azure OpenAI at {host} accepted our credentials (api-version "
                f"{s.api_version}); pictures go to deployment '{s.azure_deployment}' "
                f"({self.model})"
            )
        self._call(lambda: client.models.retrieve(self.model))
        host = urlsplit(s.base_url or "https://api.openai.com").netloc
        return f"OpenAI at {host} serves {self.model}"

"""Google's image models on Vertex AI: Imagen (`:predict`) and Gemini image (`:generateContent`).

We speak REST through google-auth's `AuthorizedSession` rather than the Vertex SDK: both API
shapes are small JSON documents, and one authorised session (one token, one connection pool)
can then serve every thread of the process.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.auth.credentials import Credentials
from google.auth.transport.requests import AuthorizedSession
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2 import service_account
from requests.adapters import HTTPAdapter

from bot import metrics
from bot.config import Config, GoogleConfig, RetryConfig
from bot.generation.pacing import submit_in_context
from bot.generation.pricing import TokenUsage
from bot.generation.providers.base import ImageProvider, decode_image
from bot.generation.retry import next_wait, retry_after_seconds
from bot.generation.types import (
    MAX_IMAGES,
    ConfigurationError,
    ContentPolicyError,
    GeneratedImage,
    ImageRequest,
    ImagineError,
    InvalidRequestError,
    NoImageError,
    ProviderOutput,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
IMAGEN_PREFIXES = ("imagen", "imagegeneration")
GEMINI_PREFIX = "gemini"
IMAGEN_ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
GEMINI_ASPECT_RATIOS = IMAGEN_ASPECT_RATIOS + ("2:3", "3:2", "4:5", "5:4", "21:9")
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
POOL_SIZE = 64  # connections kept per host: many generations run at once
GEMINI_WORKERS = 32  # threads for the one-image-per-call Gemini fan-out
RATE_LIMIT_RETRY_AFTER = 60.0  # Vertex sends no Retry-After; quotas are per minute
# Seeds the APIs accept: Gemini's generationConfig.seed is an int32, Imagen's seed a uint32.
# Vertex answers 400 outside them, so a seed beyond is mapped in (seed mod 2^31 or 2^32: the
# same seed always gives the same picture) and the post says so, rather than refused: the
# Slack command takes any uint32, and a comparison should not fail on one model's range.
GEMINI_SEEDS = (-(2**31), 2**31 - 1)
IMAGEN_SEEDS = (0, 2**32 - 1)
# Gemini finish reasons that mean "the safety filter withheld the picture"; others (NO_IMAGE,
# IMAGE_OTHER, MAX_TOKENS, ...) mean the model simply answered without one.
GEMINI_SAFETY_FINISH = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    }
)
_CREDENTIALS_HINT = "GOOGLE_SERVICE_ACCOUNT_JSON (or GOOGLE_APPLICATION_CREDENTIALS)"


def vertex_base_url(google: GoogleConfig) -> str:
    """`VERTEX_AI_BASE_URL`, else the regional host (the global one for location `global`)."""
    if google.base_url:
        return google.base_url.rstrip("/")
    if google.location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{google.location}-aiplatform.googleapis.com"


def model_method_url(google: GoogleConfig, project: str, method: str) -> str:
    """The full URL of `publishers/google/models/{model}:{method}` in the project and region."""
    return (
        f"{vertex_base_url(google)}/{google.api_version}/projects/{project}"
        f"/locations/{google.location}/publishers/google/models/{google.model}:{method}"
    )


def _trim(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _google_error(response: requests.Response) -> tuple[str, str, list[Any]]:
    """(status, message, details) from Google's `{"error": {...}}` body, tolerant of others."""
    try:
        body = response.json()
    except ValueError:
        return "", _trim(response.text or response.reason or ""), []
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        return (
            str(error.get("status") or ""),
            str(error.get("message") or ""),
            details if isinstance(details, list) else [],
        )
    if isinstance(error, str):  # OAuth-style {"error": "...", "error_description": "..."}
        return error, str(body.get("error_description") or ""), []
    return "", _trim(response.text or ""), []


_BOILERPLATE = ("You will not be charged", "Try rephrasing", "If you think", "Support codes")


def _rai_summary(reason: str) -> str:
    """Google's filter reason without its boilerplate, keeping the support codes for feedback."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(reason.split()))
    kept = [s for s in sentences if not s.startswith(_BOILERPLATE)]
    codes = re.findall(r"Support codes?: ([\d, ]*\d)", reason)
    summary = _trim(" ".join(kept) or reason, 200)
    return f"{summary} (support codes: {', '.join(codes)})" if codes else summary


def _plural(count: int, total: int, verb: str) -> str:
    return f"{count} of {total} images {'was' if count == 1 else 'were'} {verb}"


def seed_in_range(seed: int, seeds: tuple[int, int], model: str) -> tuple[int, str | None]:
    """`seed` if the model takes it, else the same seed mapped into range and a note saying so."""
    low, high = seeds
    if low <= seed <= high:
        return seed, None
    mapped = seed % (high + 1)
    return mapped, (
        f"{model} takes seeds from {low} to {high}; seed {seed} was used as {mapped} "
        f"({seed} mod {high + 1})."
    )


@dataclass(frozen=True)
class _NoImage:
    """Why one Gemini call made no picture, in Google's words."""

    reason: str  # blockReason or finishReason: "PROHIBITED_CONTENT", "IMAGE_SAFETY", "NO_IMAGE"
    explanation: str  # blockReasonMessage, finishMessage or the model's text; may be empty
    stage: str  # "prompt" (refused), "image" (drawn, then filtered), "none" (no picture made)

    def describe(self) -> str:
        """`REASON: Google's explanation` without its boilerplate."""
        explained = _rai_summary(self.explanation).rstrip(".") if self.explanation else ""
        return f"{self.reason}: {explained}" if explained else self.reason


_UNDECODABLE = "the image data Google sent did not decode."
_NO_IMAGE_VERBS = (
    ("prompt", "refused by Google"),
    ("image", "withheld by Google's safety filter"),
    ("none", "not drawn"),
)


def gemini_usage(metadata: Any) -> TokenUsage | None:
    """`usageMetadata`: prompt tokens in; candidates (the picture, and any text) out. An
    answer without `candidatesTokenCount` is billed what the total says beyond the prompt."""
    if not isinstance(metadata, dict) or "totalTokenCount" not in metadata:
        return None
    prompt = int(metadata.get("promptTokenCount") or 0)
    total = int(metadata.get("totalTokenCount") or 0)
    out = metadata.get("candidatesTokenCount")
    if not isinstance(out, int):
        return TokenUsage(prompt, max(0, total - prompt))
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)  # thinking is billed as output
    return TokenUsage(prompt, out + thoughts)


@dataclass
class _CallOutcome:
    """One Gemini call: its images, or why it made none."""

    images: list[GeneratedImage] = field(default_factory=list)
    blocked: _NoImage | None = None
    error: ImagineError | None = None
    damaged: int = 0  # image parts whose base64 did not decode
    usage: TokenUsage | None = None  # the call's `usageMetadata`


class GoogleImageProvider(ImageProvider):
    """`imagen`: Google's image models on Vertex AI, for whichever model id is configured."""

    name = "imagen"
    aliases = ("google", "gemini")
    label = "Google Vertex AI"
    max_prompt_chars = 1900  # Imagen allows 480 tokens; ~4 characters a token, with margin

    def __init__(self, google: GoogleConfig, retry: RetryConfig) -> None:
        self._google = google
        self._retry = retry
        self._session_lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._session: AuthorizedSession | None = None
        self._auth_request: AuthRequest | None = None
        self._pool = ThreadPoolExecutor(GEMINI_WORKERS, thread_name_prefix="vertex-gemini")

    @classmethod
    def from_config(cls, config: Config) -> GoogleImageProvider:
        return cls(config.google, config.retry)

    @property
    def model(self) -> str:
        return self._google.model

    @property
    def requests_per_minute(self) -> float | None:
        return self._google.requests_per_minute  # IMAGEN_REQUESTS_PER_MINUTE

    # -- configuration -------------------------------------------------------------------
    def _service_account_info(self) -> dict[str, Any] | None:
        raw = self._google.service_account_json
        if not raw:
            return None
        try:
            info = json.loads(raw)
        except ValueError:
            info = None
        if not isinstance(info, dict):
            raise ConfigurationError(
                "GOOGLE_SERVICE_ACCOUNT_JSON is not valid JSON; paste the whole service-account "
                "key file into it.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
                provider=self.name,
            )
        return info

    def _project(self) -> str | None:
        if self._google.project:
            return self._google.project
        try:
            info = self._service_account_info()
        except ConfigurationError:
            return None
        project = info.get("project_id") if info else None
        return project if isinstance(project, str) and project else None

    def missing_settings(self) -> list[str]:
        return [] if self._project() else ["GOOGLE_CLOUD_PROJECT"]

    def _family(self) -> str:
        model = self._google.model.lower()
        if model.startswith(IMAGEN_PREFIXES):
            return "imagen"
        if model.startswith(GEMINI_PREFIX):
            return "gemini"
        raise ConfigurationError(
            f"IMAGEN_MODEL {self._google.model!r} is neither an Imagen nor a Gemini image model; "
            "check IMAGEN_MODEL (for example gemini-3.1-flash-image).",
            setting="IMAGEN_MODEL",
            provider=self.name,
        )

    def _require_project(self) -> str:
        project = self._project()
        if not project:
            raise ConfigurationError(
                "No Google Cloud project is configured; set GOOGLE_CLOUD_PROJECT.",
                setting="GOOGLE_CLOUD_PROJECT",
                provider=self.name,
            )
        return project

    # -- credentials and session ---------------------------------------------------------
    def _credentials(self) -> Credentials:
        info = self._service_account_info()
        if info is not None:
            try:
                return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
            except (ValueError, KeyError, TypeError):
                raise ConfigurationError(
                    "GOOGLE_SERVICE_ACCOUNT_JSON is not a usable service-account key; download "
                    "a new JSON key for the service account.",
                    setting="GOOGLE_SERVICE_ACCOUNT_JSON",
                    provider=self.name,
                ) from None
        try:
            credentials, _ = google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.DefaultCredentialsError:
            raise ConfigurationError(
                "No Google credentials found; set GOOGLE_SERVICE_ACCOUNT_JSON or "
                "GOOGLE_APPLICATION_CREDENTIALS.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
                provider=self.name,
            ) from None
        return credentials

    def _authorized_session(self) -> AuthorizedSession:
        """Build the credentials and session once; every thread then shares them."""
        session = self._session
        if session is not None:
            return session
        with self._session_lock:
            if self._session is None:
                token_http = requests.Session()
                token_http.mount("https://", HTTPAdapter(max_retries=2))
                self._auth_request = AuthRequest(token_http)
                session = AuthorizedSession(self._credentials(), auth_request=self._auth_request)
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    def _ensure_token(self, session: AuthorizedSession) -> None:
        """Refresh under a lock: google-auth would let every waiting thread fetch its own."""
        credentials = session.credentials
        if credentials.valid:
            return
        with self._token_lock:
            if not credentials.valid:
                assert self._auth_request is not None
                credentials.refresh(partial(self._auth_request, timeout=self._retry.timeout))

    def close(self) -> None:
        """Release the thread pool and connections (tests; the process normally keeps them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    # -- HTTP with retries and error mapping ----------------------------------------------
    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call, retried on quota, 5xx and connection errors; errors mapped for people.

        Every attempt first waits its turn under the quota (IMAGEN_REQUESTS_PER_MINUTE)."""
        session = self._authorized_session()
        attempt = 0
        while True:
            status: int | None = None
            retry_after: float | None = None
            self.pacer.wait_turn(self.name, retry=attempt > 0)
            try:
                self._ensure_token(session)
                response = session.request(method, url, json=body, timeout=self._retry.timeout)
            except requests.Timeout:
                raise ProviderTimeoutError(
                    f"Google Vertex AI did not answer within {self._retry.timeout:g} seconds; "
                    "try again, perhaps with fewer images.",
                    provider=self.name,
                ) from None
            except (requests.ConnectionError, google.auth.exceptions.TransportError):
                pass  # retried below like a 503
            except google.auth.exceptions.RefreshError as exc:
                if not getattr(exc, "retryable", False):
                    raise ConfigurationError(
                        "Google refused to issue an access token for our credentials; check "
                        f"{_CREDENTIALS_HINT}.",
                        setting="GOOGLE_SERVICE_ACCOUNT_JSON",
                        provider=self.name,
                    ) from None
            else:
                status = response.status_code
                if status < 300:
                    return self._json(response)
                if status not in RETRYABLE_STATUSES:
                    raise self._error_for(response)
                if status == 429:
                    metrics.THROTTLED.labels(self.name).inc()
                retry_after = retry_after_seconds(response.headers)
            wait = next_wait(attempt, retry_after, self._retry, throttled=status == 429)
            if wait is None:
                raise self._give_up(status, retry_after)
            time.sleep(wait)
            attempt += 1

    def _json(self, response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderUnavailableError(
                "Google Vertex AI sent an answer we could not read; try again in a minute.",
                provider=self.name,
            )
        return data

    def _give_up(self, status: int | None, retry_after: float | None) -> ImagineError:
        if status == 429:
            return RateLimitError(
                f"Google Vertex AI is over its quota for {self.model}; "
                "try again in about a minute.",
                retry_after=retry_after or RATE_LIMIT_RETRY_AFTER,
                provider=self.name,
            )
        if status is None:
            return ProviderUnavailableError(
                "Could not reach Google Vertex AI; try again in a few minutes, and check "
                "VERTEX_AI_BASE_URL if it is set.",
                provider=self.name,
            )
        return ProviderUnavailableError(
            f"Google Vertex AI is failing right now (HTTP {status}); try again in a few minutes.",
            provider=self.name,
        )

    def _error_for(self, response: requests.Response) -> ImagineError:
        status = response.status_code
        google_status, message, details = _google_error(response)
        if status == 401:
            return ConfigurationError(
                f"Google Vertex AI rejected our credentials; check {_CREDENTIALS_HINT}.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
                provider=self.name,
            )
        if status == 403:
            reasons = {str(d.get("reason", "")) for d in details if isinstance(d, dict)}
            project = self._project()
            if "SERVICE_DISABLED" in reasons or "has not been used" in message:
                return ConfigurationError(
                    f"The Vertex AI API is not enabled in project {project}; enable "
                    "aiplatform.googleapis.com there or check GOOGLE_CLOUD_PROJECT.",
                    setting="GOOGLE_CLOUD_PROJECT",
                    provider=self.name,
                )
            return ConfigurationError(
                f"Google Vertex AI denied access to project {project}; check "
                "GOOGLE_CLOUD_PROJECT and that the service account in GOOGLE_SERVICE_ACCOUNT_JSON "
                "has the Vertex AI User role.",
                setting="GOOGLE_CLOUD_PROJECT",
                provider=self.name,
            )
        if status == 404:
            return ConfigurationError(
                f"Google Vertex AI has no model {self.model} in {self._google.location}; check "
                "IMAGEN_MODEL and GOOGLE_CLOUD_LOCATION.",
                setting="IMAGEN_MODEL",
                provider=self.name,
            )
        if status == 400 and "responsible ai" in message.lower():
            return ContentPolicyError(
                "Google refused this prompt under its Responsible AI rules; try rewording it.",
                reason=_trim(message, 400),
                provider=self.name,
            )
        if 400 <= status < 500:
            detail = _trim(message, 200) or google_status or f"HTTP {status}"
            return InvalidRequestError(
                f"Google Vertex AI rejected the request: {detail}", provider=self.name
            )
        return ProviderUnavailableError(
            f"Google Vertex AI is failing right now (HTTP {status}); try again in a few minutes.",
            provider=self.name,
        )

    # -- generation ----------------------------------------------------------------------
    def validate(self, request: ImageRequest) -> None:
        super().validate(request)
        if not request.prompt.strip():
            raise InvalidRequestError(
                "The prompt is empty; describe the picture you want.", provider=self.name
            )
        if not 1 <= request.n <= MAX_IMAGES:
            raise InvalidRequestError(
                f"{self.name} makes 1 to {MAX_IMAGES} images at a time, not {request.n}.",
                provider=self.name,
            )
        try:
            family = self._family()
        except ConfigurationError:
            return  # generate() reports the model setting
        ratios = GEMINI_ASPECT_RATIOS if family == "gemini" else IMAGEN_ASPECT_RATIOS
        if request.aspect_ratio not in ratios:
            raise InvalidRequestError(
                f"{self.model} draws at {', '.join(ratios)}, not {request.aspect_ratio}.",
                provider=self.name,
            )

    def generate(self, request: ImageRequest) -> ProviderOutput:
        self.validate(request)
        family = self._family()
        project = self._require_project()
        started = time.monotonic()
        if family == "imagen":
            output = self._generate_imagen(request, project)
        else:
            output = self._generate_gemini(request, project)
        output.seconds = time.monotonic() - started
        return output

    def _unsupported_notes(self, request: ImageRequest) -> list[str]:
        notes = []
        if request.quality and request.quality.strip().lower() != "auto":
            notes.append(f"{self.model} has no quality setting; quality={request.quality} ignored.")
        if request.style:
            notes.append(f"{self.model} has no style setting; style={request.style} ignored.")
        return notes

    def _undecodable(self) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            "Google Vertex AI sent image data we could not decode; try again.",
            provider=self.name,
        )

    def _generate_imagen(self, request: ImageRequest, project: str) -> ProviderOutput:
        notes = self._unsupported_notes(request)
        parameters: dict[str, Any] = {
            "sampleCount": request.n,
            "aspectRatio": request.aspect_ratio,
        }
        if request.negative_prompt:
            parameters["negativePrompt"] = request.negative_prompt
        if request.seed is not None:
            seed, note = seed_in_range(request.seed, IMAGEN_SEEDS, self.model)
            notes.extend([note] if note else [])
            parameters["seed"] = seed
            parameters["addWatermark"] = False  # Imagen ignores the seed while watermarking
        parameters["personGeneration"] = self._google.person_generation
        parameters["safetySetting"] = self._google.safety_setting
        parameters["includeRaiReason"] = True
        body = {"instances": [{"prompt": request.prompt}], "parameters": parameters}
        data = self._call("POST", model_method_url(self._google, project, "predict"), body)

        images: list[GeneratedImage] = []
        reasons: list[str] = []
        revised: str | None = None
        damaged = 0
        for prediction in data.get("predictions") or []:
            if not isinstance(prediction, dict):
                continue
            encoded = prediction.get("bytesBase64Encoded")
            if encoded:
                decoded = decode_image(encoded)
                if decoded is None:
                    damaged += 1
                    continue
                mime = prediction.get("mimeType") or "image/png"
                images.append(GeneratedImage(data=decoded, mime_type=mime))
                enhanced = prediction.get("prompt")
                if revised is None and enhanced and enhanced != request.prompt:
                    revised = str(enhanced)
            elif prediction.get("raiFilteredReason"):
                reasons.append(str(prediction["raiFilteredReason"]))
        reason = "; ".join(dict.fromkeys(reasons)) or None
        if not images:
            if damaged and not reason:
                raise self._undecodable()
            raise ContentPolicyError(
                "Google's safety filter withheld every image drawn for this prompt; try "
                "rewording it.",
                reason=_trim(reason, 400) if reason else "Google returned no images.",
                provider=self.name,
                stage="image",
            )
        missing = request.n - len(images) - damaged
        if reason:
            filtered = max(missing, len(reasons))
            notes.append(
                f"{_plural(filtered, request.n, 'filtered')} by Google's safety filter: "
                f"{_rai_summary(reason)}"
            )
        elif missing > 0:
            notes.append(f"Google returned {len(images)} of the {request.n} images asked for.")
        if damaged:
            notes.append(f"{_plural(damaged, request.n, 'left out')}: {_UNDECODABLE}")
        return ProviderOutput(images=images, model=self.model, revised_prompt=revised, notes=notes)

    def _generate_gemini(self, request: ImageRequest, project: str) -> ProviderOutput:
        notes = self._unsupported_notes(request)
        text = request.prompt.strip()
        if request.negative_prompt:
            if not re.search(r"[.!?]$", text):
                text += "."
            text += f" Avoid: {request.negative_prompt.strip().rstrip('.')}."
            notes.append("Gemini has no negative prompt; it was added to the prompt as 'Avoid: …'.")
        config: dict[str, Any] = {
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": request.aspect_ratio},
        }
        if request.seed is not None:
            seed, note = seed_in_range(request.seed, GEMINI_SEEDS, self.model)
            notes.extend([note] if note else [])
            config["seed"] = seed
        body = {
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": config,
        }
        url = model_method_url(self._google, project, "generateContent")
        if request.n == 1:
            outcomes = [self._gemini_once(url, body)]
        else:  # one image per call: the n calls run side by side
            futures = [
                submit_in_context(self._pool, self._gemini_once, url, body)
                for _ in range(request.n)
            ]
            outcomes = [future.result() for future in futures]

        images = [image for outcome in outcomes for image in outcome.images][: request.n]
        blocked = [o.blocked for o in outcomes if o.blocked]
        errors = [o.error for o in outcomes if o.error]
        damaged = sum(o.damaged for o in outcomes)
        if not images:
            others = [e for e in errors if not isinstance(e, ContentPolicyError)]
            if others or errors:
                raise (others or errors)[0]
            if blocked:
                raise self._no_image_error(blocked[0])
            raise self._undecodable() if damaged else self._no_image_error(None)
        for stage, verb in _NO_IMAGE_VERBS:
            group = [b for b in blocked if b.stage == stage]
            if group:
                why = "; ".join(dict.fromkeys(b.describe() for b in group))
                notes.append(f"{_plural(len(group), request.n, verb)} ({_trim(why, 300)}).")
        for error in errors:
            notes.append(f"One of the {request.n} images failed: {error.message}")
        if damaged:
            notes.append(f"{_plural(damaged, request.n, 'left out')}: {_UNDECODABLE}")
        usages = [o.usage for o in outcomes if o.usage is not None]
        usage = sum(usages, TokenUsage()) if usages else None
        return ProviderOutput(images=images, model=self.model, notes=notes, usage=usage)

    # -- edits: the picture and the words in one user turn (Gemini image models only) --------
    max_edit_bytes = 14 * 1024 * 1024  # base64 grows it by 4/3: under 20 MB a request

    @property
    def can_edit(self) -> bool:
        return self._google.model.lower().startswith(GEMINI_PREFIX)

    def edit_hint(self) -> str:
        return "set IMAGEN_MODEL to a Gemini image model such as gemini-3.1-flash-image"

    def edit(self, prompt: str, image: bytes, mime_type: str) -> ProviderOutput:
        if not self.can_edit:
            return super().edit(prompt, image, mime_type)
        project = self._require_project()
        parts = [
            {"inlineData": {"mimeType": mime_type, "data": base64.b64encode(image).decode()}},
            {"text": prompt.strip()},
        ]
        body = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {"responseModalities": ["IMAGE"]},
        }
        url = model_method_url(self._google, project, "generateContent")
        outcome = self._gemini_once(url, body)
        if outcome.error:
            raise outcome.error
        if not outcome.images:
            raise self._undecodable() if outcome.damaged else self._no_image_error(outcome.blocked)
        return ProviderOutput(images=outcome.images[:1], model=self.model)

    def _no_image_error(self, blocked: _NoImage | None) -> ImagineError:
        """One sentence saying which it was: the prompt refused, the picture withheld, or none
        made at all, with Google's own explanation (finishMessage / blockReasonMessage)."""
        if blocked is None:
            return NoImageError(
                f"{self.model} answered without a picture; try again or reword the prompt.",
                provider=self.name,
            )
        why = f" ({_trim(blocked.describe(), 300)})"
        if blocked.stage == "prompt":
            return ContentPolicyError(
                f"Google refused this prompt{why}; try rewording it.",
                reason=blocked.reason,
                provider=self.name,
                stage="prompt",
            )
        if blocked.stage == "image":
            return ContentPolicyError(
                f"{self.model} drew a picture but Google's safety filter withheld it{why}; "
                "try rewording the prompt.",
                reason=blocked.reason,
                provider=self.name,
                stage="image",
            )
        return NoImageError(
            f"{self.model} answered without a picture{why}; try again or reword the prompt.",
            provider=self.name,
        )

    def _gemini_once(self, url: str, body: dict[str, Any]) -> _CallOutcome:
        """One `generateContent` call; failures are returned so the other calls still count."""
        try:
            data = self._call("POST", url, body)
        except ImagineError as exc:
            return _CallOutcome(error=exc)
        feedback = data.get("promptFeedback") or {}
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            message = str(feedback.get("blockReasonMessage") or "")
            return _CallOutcome(blocked=_NoImage(str(feedback["blockReason"]), message, "prompt"))
        outcome = _CallOutcome(usage=gemini_usage(data.get("usageMetadata")))
        finish_reasons: list[str] = []
        explanations: list[str] = []
        for candidate in data.get("candidates") or []:
            if not isinstance(candidate, dict):
                continue
            parts = (candidate.get("content") or {}).get("parts") or []
            for part in parts:
                if not isinstance(part, dict) or part.get("thought"):
                    continue  # an interim "thinking" image or text of the pro models
                inline = part.get("inlineData")
                if inline and inline.get("data"):
                    decoded = decode_image(inline["data"])
                    if decoded is None:
                        outcome.damaged += 1
                        continue
                    mime = inline.get("mimeType") or "image/png"
                    outcome.images.append(GeneratedImage(data=decoded, mime_type=mime))
                elif isinstance(part.get("text"), str) and part["text"].strip():
                    explanations.append(part["text"])  # the model saying why, in words
            finish = candidate.get("finishReason")
            if finish and finish != "STOP":
                finish_reasons.append(str(finish))
            if candidate.get("finishMessage"):
                explanations.insert(0, str(candidate["finishMessage"]))
        if outcome.images or outcome.damaged:
            return outcome
        reason = ", ".join(finish_reasons) or "NO_IMAGE"
        safety = any(r in GEMINI_SAFETY_FINISH for r in finish_reasons)
        explanation = explanations[0] if explanations else ""
        outcome.blocked = _NoImage(reason, explanation, "image" if safety else "none")
        return outcome

    def check(self) -> str:
        self._family()
        self._require_project()
        url = f"{vertex_base_url(self._google)}/v1beta1/publishers/google/models/{self.model}"
        self._call("GET", url)
        return f"model {self.model} reachable"

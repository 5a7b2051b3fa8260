"""A fake Azure OpenAI / OpenAI image service, plus an OAuth2 client-credentials token URL.

It answers in the real shapes (WIRE.md): Azure's deployment path with `api-version` and
`api-key` or bearer auth, OpenAI's `/v1/images/generations` with `model` in the body, DALL·E 3
rejecting n>1, gpt-image rejecting `response_format`/`style`, URL answers that point at real
PNG bytes served by this same fake, Azure content-filter annotations and errors. Helpers
script each failure a provider has to handle.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.fakes._http import FakeServer, RecordedRequest, Reply, WindowQuota
from tests.fakes.images import edited_png, image_format, png_bytes

GENERATIONS = "/images/generations"
AZURE_PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/images/generations$")
EDITS = "/images/edits"
AZURE_EDITS = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/images/edits$")
MAX_EDIT_IMAGE_BYTES = 50 * 1024 * 1024  # gpt-image models: each input image under 50 MB
EDIT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
DALLE3_SIZES = {"1024x1024", "1792x1024", "1024x1792"}
GPT_IMAGE_SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
# gpt-image-2 and later on OpenAI (not Azure, whose API versions keep the enum above): any
# WIDTHxHEIGHT, both multiples of 16, long side at most 3840 and at most 3 times the short
# one, 655,360 to 8,294,400 pixels (3840x2160).
MAX_EDGE, MAX_RATIO, MIN_PIXELS, MAX_PIXELS = 3840, 3.0, 655_360, 8_294_400
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_FLEXIBLE_MODEL = re.compile(r"^gpt-image-(\d+(?:\.\d+)?)")
# Azure OpenAI streams image generation from this API version on (older ones refuse `stream`)
AZURE_STREAMING_SINCE = "2025-04-01"
FILTERED_OUTPUT_MESSAGE = "Generated image was filtered as a result of our safety system."
TASK_FAILED_MESSAGE = "Your task failed as a result of our safety system."


PARTIAL_IMAGE = "image_generation.partial_image"
COMPLETED = "image_generation.completed"
STREAM_ERRORS = {
    "server_error": ("server_error", "The server had an error while processing your request."),
    "moderation_blocked": (
        "moderation_blocked",
        "Your request was rejected by the safety system. safety_violations=[violence].",
    ),
}


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event as the API writes it: `event:` and one `data:` line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def is_dalle3(model: str) -> bool:
    return model.lower().startswith(("dall-e-3", "dalle3", "dall-e3"))


def takes_flexible_sizes(model: str, *, azure: bool) -> bool:
    version = _FLEXIBLE_MODEL.match(model.lower())
    return not azure and version is not None and float(version.group(1)) >= 2


def flexible_size_problem(size: Any) -> str | None:
    """Why OpenAI refuses `size` for gpt-image-2, or None when it takes it."""
    if size == "auto":
        return None
    match = _SIZE.match(size) if isinstance(size, str) else None
    if not match:
        return f"Invalid size '{size}'. Use WIDTHxHEIGHT or auto."
    width, height = int(match[1]), int(match[2])
    if width % 16 or height % 16:
        return f"Invalid size '{size}'. Width and height must both be multiples of 16."
    if max(width, height) > MAX_EDGE:
        return f"Invalid size '{size}'. The longest side can be at most {MAX_EDGE} pixels."
    if min(width, height) == 0 or max(width, height) / min(width, height) > MAX_RATIO:
        return f"Invalid size '{size}'. The aspect ratio must be between 1:3 and 3:1."
    if not MIN_PIXELS <= width * height <= MAX_PIXELS:
        return (
            f"Invalid size '{size}'. The image must have between {MIN_PIXELS} and "
            f"{MAX_PIXELS} pixels."
        )
    return None


def error(status: int, message: str, code: str | None = None, **extra: Any) -> Reply:
    body = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    body.update(extra)
    return Reply(status, {"error": body})


class FakeOpenAIImages(FakeServer):
    """Azure OpenAI and OpenAI image generation on one loopback port."""

    def __init__(
        self,
        *,
        azure_api_key: str = "azure-test-key",
        openai_api_key: str = "sk-test-openai-key",
        deployments: dict[str, str] | None = None,
        openai_models: set[str] | None = None,
        client_id: str = "imagine-client",
        client_secret: str = "client-secret-value",
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__()
        self.azure_api_key = azure_api_key
        self.openai_api_key = openai_api_key
        self.deployments = deployments if deployments is not None else {"img": "gpt-image-1"}
        self.openai_models = openai_models or {"gpt-image-1", "gpt-image-1.5", "gpt-image-2"}
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.token_delay = 0.0
        self.generation_delay = 0.0  # seconds each generation call takes (overlap tests)
        self.forever: Reply | None = None  # answer every generation call with this
        self.quota: WindowQuota | None = None  # the deployment's rate limit, when set
        self.issued_tokens: list[str] = []
        self.token_scopes: list[str | None] = []
        self.files: dict[str, bytes] = {}
        self.received_pictures: list[bytes] = []  # the input pictures of edits
        self.in_flight = 0
        self.max_in_flight = 0
        self._stream_failures: list[tuple[str, int]] = []
        self._counter = itertools.count(1)
        self._state = threading.Lock()

    def reset(self) -> None:
        """Back to a fresh fake (scripts, records, tokens, delays), keeping keys and models."""
        super().reset()
        with self._state:
            self.token_delay = 0.0
            self.generation_delay = 0.0
            self.forever = None
            self.quota = None
            self.issued_tokens.clear()
            self.token_scopes.clear()
            self.files.clear()
            self._stream_failures.clear()
            self.received_pictures.clear()
            self.max_in_flight = self.in_flight  # a straggler from a timeout test counts

    # -- routing --------------------------------------------------------------------------
    def answer(self, request: RecordedRequest) -> Reply:
        path = request.path
        if request.method == "POST" and path == "/oauth/token":
            return self._token(request)
        if request.method == "GET" and path.startswith("/files/"):
            data = self.files.get(path.removeprefix("/files/"))
            return Reply(200, data, {"Content-Type": "image/png"}) if data else Reply(404, b"")
        match = AZURE_PATH.match(path)
        if request.method == "POST" and match:
            return self._azure_generation(request, match["deployment"])
        if request.method == "POST" and path == "/v1/images/generations":
            return self._openai_generation(request)
        match = AZURE_EDITS.match(path)
        if request.method == "POST" and match:
            return self._azure_edit(request, match["deployment"])
        if request.method == "POST" and path == "/v1/images/edits":
            return self._openai_edit(request)
        if request.method == "GET" and path == "/openai/models":
            return self._azure_models(request)
        if request.method == "GET" and path.startswith("/v1/models/"):
            return self._openai_model(request, path.removeprefix("/v1/models/"))
        return Reply(404, {"error": {"code": "404", "message": "Resource not found"}})

    # -- OAuth2 client credentials ----------------------------------------------------------
    def _token(self, request: RecordedRequest) -> Reply:
        if self.token_delay:
            time.sleep(self.token_delay)
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return Reply(401, {"error": "invalid_client"})
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type"})
        token = f"tok-{next(self._counter)}-{time.monotonic_ns()}"
        with self._state:
            self.issued_tokens.append(token)
            self.token_scopes.append(form.get("scope"))
        return Reply(
            200,
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
        )

    def token_calls(self) -> list[RecordedRequest]:
        return self.calls("/oauth/token")

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (a 401 on the next call)."""
        with self._state:
            self.issued_tokens.clear()

    def _bearer(self, request: RecordedRequest) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    # -- Azure ------------------------------------------------------------------------------
    def _azure_auth(self, request: RecordedRequest) -> Reply | None:
        bearer = self._bearer(request)
        if request.headers.get("api-key") == self.azure_api_key or (
            bearer is not None and bearer in self.issued_tokens
        ):
            return None
        return Reply(
            401,
            {
                "error": {
                    "code": "401",
                    "message": "Access denied due to invalid subscription key or wrong API "
                    "endpoint. Make sure to provide a valid key for an active subscription "
                    "and use a correct regional API endpoint for your resource.",
                }
            },
        )

    def _azure_generation(self, request: RecordedRequest, deployment: str) -> Reply:
        if "api-version" not in request.query:
            return Reply(404, {"error": {"code": "404", "message": "Resource not found"}})
        denied = self._azure_auth(request)
        if denied:
            return denied
        model = self.deployments.get(deployment)
        if model is None:
            return error(
                404,
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
                "DeploymentNotFound",
            )
        version = request.query["api-version"]
        if (request.json() or {}).get("stream") and version[:10] < AZURE_STREAMING_SINCE:
            return error(
                400,
                f"Unrecognized request argument supplied: stream (api-version {version}).",
                "BadRequest",
            )
        return self._generate(request, model, azure=True)

    def _azure_models(self, request: RecordedRequest) -> Reply:
        denied = self._azure_auth(request) if "api-version" in request.query else Reply(404)
        if denied:
            return denied
        data = [{"id": m, "object": "model", "created": 0} for m in self.deployments.values()]
        return Reply(200, {"object": "list", "data": data})

    # -- OpenAI -----------------------------------------------------------------------------
    def _openai_auth(self, request: RecordedRequest) -> Reply | None:
        if self._bearer(request) == self.openai_api_key:
            return None
        return error(
            401,
            "Incorrect API key provided: sk-***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        )

    def _model_not_found(self, model: str) -> Reply:
        return error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "model_not_found",
        )

    def _openai_generation(self, request: RecordedRequest) -> Reply:
        denied = self._openai_auth(request)
        if denied:
            return denied
        model = (request.json() or {}).get("model") or "dall-e-2"
        if model not in self.openai_models:
            return self._model_not_found(model)
        return self._generate(request, model, azure=False)

    def _openai_model(self, request: RecordedRequest, model: str) -> Reply:
        denied = self._openai_auth(request)
        if denied:
            return denied
        if model not in self.openai_models:
            return self._model_not_found(model)
        return Reply(200, {"id": model, "object": "model", "created": 0, "owned_by": "system"})

    # -- generation -------------------------------------------------------------------------
    def _generate(self, request: RecordedRequest, model: str, *, azure: bool) -> Reply:
        if self.quota is not None:
            wait = self.quota.take()
            if wait is not None:  # Azure says when to come back, in seconds and in ms
                return self._rate_limited(
                    {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(int(wait * 1000))}
                )
        body = request.json() or {}
        if body.get("stream") is True and self.forever is None:
            problem = self._stream_problem(body, model)
            if problem is not None:
                return problem
            return self._draw_streamed(body, model, azure=azure)  # the delay spread over it
        with self._state:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.generation_delay:
                time.sleep(self.generation_delay)
            if self.forever is not None:
                return self.forever
            return self._draw(body, model, azure=azure)
        finally:
            with self._state:
                self.in_flight -= 1

    # -- streaming: server-sent events ----------------------------------------------------------
    @staticmethod
    def _stream_problem(body: dict[str, Any], model: str) -> Reply | None:
        """What the API refuses in a streamed request: models that do not stream, and
        `partial_images` outside 0-3."""
        if is_dalle3(model) or model.lower().startswith("dall-e"):
            return error(
                400,
                f"Streaming is not supported for model '{model}'.",
                "invalid_value",
                param="stream",
            )
        partial = body.get("partial_images", 0)
        if not isinstance(partial, int) or isinstance(partial, bool) or not 0 <= partial <= 3:
            return error(
                400,
                f"Invalid 'partial_images': expected an integer from 0 to 3, but got {partial!r}.",
                "invalid_value",
                param="partial_images",
            )
        return None

    def _draw_streamed(self, body: dict[str, Any], model: str, *, azure: bool) -> Reply:
        """The answer as `text/event-stream`: `partial_images` previews, then the picture, timed
        evenly over `generation_delay`. `stream_failure` (scripted) breaks it after some
        previews, with an `error` event or by cutting the connection."""
        answer = self._draw(body, model, azure=azure)
        if answer.status != 200:
            return answer
        partials = body.get("partial_images", 0)
        delay, failure = self.generation_delay, self._next_stream_failure()
        meta = {
            "background": answer.body["background"],
            "output_format": answer.body["output_format"],
            "quality": answer.body["quality"],
            "size": answer.body["size"],
        }
        prompt = body["prompt"]

        def events():
            with self._state:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                steps = partials + 1
                for index in range(partials):
                    time.sleep(delay / steps)
                    if failure is not None and failure[1] == index:
                        yield from self._failure_events(failure[0])
                        return
                    preview = png_bytes(f"partial{index}:{prompt}")
                    yield sse(
                        PARTIAL_IMAGE,
                        {
                            "type": PARTIAL_IMAGE,
                            "b64_json": base64.b64encode(preview).decode(),
                            "created_at": int(time.time()),
                            "partial_image_index": index,
                            **meta,
                        },
                    )
                time.sleep(delay / steps)
                if failure is not None and failure[1] >= partials:
                    yield from self._failure_events(failure[0])
                    return
                for entry in answer.body["data"]:
                    yield sse(
                        COMPLETED,
                        {
                            "type": COMPLETED,
                            "b64_json": entry["b64_json"],
                            "created_at": int(time.time()),
                            **meta,
                            "usage": {
                                "input_tokens": 10,
                                "input_tokens_details": {"image_tokens": 0, "text_tokens": 10},
                                "output_tokens": 272,
                                "total_tokens": 282,
                            },
                        },
                    )
            finally:
                with self._state:
                    self.in_flight -= 1

        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        return Reply(200, headers=headers, stream=events())

    @staticmethod
    def _failure_events(kind: str):
        if kind == "cut":
            raise ConnectionAbortedError("the stream was cut")  # no terminating chunk
        code, message = STREAM_ERRORS[kind]
        yield sse(
            "error",
            {
                "type": "error",
                "error": {"type": kind, "code": code, "message": message, "param": None},
            },
        )

    def _next_stream_failure(self) -> tuple[str, int] | None:
        with self._state:
            return self._stream_failures.pop(0) if self._stream_failures else None

    def script_stream_failure(self, kind: str = "server_error", after: int = 1) -> None:
        """The next streamed answer breaks after `after` previews: `kind` "server_error" or
        "moderation_blocked" sends an `error` event, "cut" closes the connection mid-body."""
        with self._state:
            self._stream_failures.append((kind, after))

    def _draw(self, body: dict[str, Any], model: str, *, azure: bool) -> Reply:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return error(400, "Missing required parameter: 'prompt'.", "missing_required_parameter")
        n = body.get("n", 1)
        dalle = is_dalle3(model)
        if dalle:
            if n != 1:
                return error(400, "You must provide n=1 for this model.", "invalid_value")
            if len(prompt) > 4000:
                return error(400, "Prompt is too long; the maximum is 4000 characters.")
            if body.get("size", "1024x1024") not in DALLE3_SIZES:
                return error(400, f"Invalid size '{body.get('size')}'.", "invalid_size")
            if body.get("quality", "standard") not in ("standard", "hd"):
                return error(400, f"Invalid quality '{body.get('quality')}'.", "invalid_value")
            if body.get("style", "vivid") not in ("vivid", "natural"):
                return error(400, f"Invalid style '{body.get('style')}'.", "invalid_value")
            fmt = body.get("response_format", "url")
        else:
            for unknown in ("response_format", "style"):
                if unknown in body:
                    return error(400, f"Unknown parameter: '{unknown}'.", "unknown_parameter")
            if not isinstance(n, int) or not 1 <= n <= 10:
                return error(400, "n must be between 1 and 10.", "invalid_value")
            size = body.get("size", "auto")
            if takes_flexible_sizes(model, azure=azure):
                problem = flexible_size_problem(size)
                if problem:
                    return error(400, problem, "invalid_value", param="size")
            elif size not in GPT_IMAGE_SIZES:
                return error(400, f"Invalid size '{size}'.", "invalid_value", param="size")
            if body.get("quality", "auto") not in ("low", "medium", "high", "auto"):
                return error(400, f"Invalid quality '{body.get('quality')}'.", "invalid_value")
            fmt = "b64_json"
        data = []
        for _ in range(n):
            image_id = f"img{next(self._counter)}"
            image = png_bytes(f"{image_id}:{prompt}")
            entry: dict[str, Any] = {}
            if fmt == "url":
                with self._state:
                    self.files[f"{image_id}.png"] = image
                entry["url"] = f"{self.url}/files/{image_id}.png"
            else:
                entry["b64_json"] = base64.b64encode(image).decode()
            if dalle:
                entry["revised_prompt"] = f"A detailed illustration of {prompt}"
            if azure:
                entry["content_filter_results"] = {
                    c: {"filtered": False, "severity": "safe"}
                    for c in ("hate", "self_harm", "sexual", "violence")
                }
            data.append(entry)
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if not dalle:
            answer.update(
                background="opaque",
                output_format="png",
                quality=body.get("quality", "medium"),
                size=body.get("size", "1024x1024"),
                usage={"input_tokens": 10, "output_tokens": 272 * n, "total_tokens": 10 + 272 * n},
            )
        return Reply(200, answer)

    # -- scripts ----------------------------------------------------------------------------
    # -- edits: multipart/form-data ----------------------------------------------------------
    def _azure_edit(self, request: RecordedRequest, deployment: str) -> Reply:
        if "api-version" not in request.query:
            return Reply(404, {"error": {"code": "404", "message": "Resource not found"}})
        denied = self._azure_auth(request)
        if denied:
            return denied
        model = self.deployments.get(deployment)
        if model is None:
            return error(
                404, "The API deployment for this resource does not exist.", "DeploymentNotFound"
            )
        return self._edit(request, model, azure=True)

    def _openai_edit(self, request: RecordedRequest) -> Reply:
        denied = self._openai_auth(request)
        if denied:
            return denied
        form = _form(request)
        model = form.get("model") if isinstance(form.get("model"), str) else "dall-e-2"
        if model not in self.openai_models:
            return self._model_not_found(str(model))
        return self._edit(request, str(model), azure=False)

    def _edit(self, request: RecordedRequest, model: str, *, azure: bool) -> Reply:
        """The edit endpoint's checks: a multipart form, a gpt-image model, one image part
        (`image` or `image[]`) that is a PNG, JPEG or WebP under 50 MB, and a prompt."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(400, "Invalid Content-Type header; expected multipart/form-data.")
        if is_dalle3(model):
            return error(
                400,
                f"Invalid value: '{model}'. Image edits need a gpt-image model.",
                "invalid_value",
            )
        form = _form(request)
        prompt = form.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return error(400, "Missing required parameter: 'prompt'.", "missing_required_parameter")
        part = form.get("image", form.get("image[]"))
        if not isinstance(part, tuple):
            return error(400, "Missing required parameter: 'image'.", "missing_required_parameter")
        data, ctype = part
        if len(data) > MAX_EDIT_IMAGE_BYTES:
            return error(400, "Image file is too large; the maximum is 50 MB.", "invalid_value")
        fmt = image_format(data)
        if fmt is None or EDIT_TYPES.get(fmt) != ctype:
            return error(
                400,
                "Invalid image file or mode for image 1, please check your image file.",
                "invalid_image_file",
            )
        with self._state:
            self.received_pictures.append(data)
        picture = edited_png(data, prompt)
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(picture).decode()}],
            "output_format": "png",
            "usage": {"input_tokens": 300, "output_tokens": 272, "total_tokens": 572},
        }
        if azure:
            answer["data"][0]["content_filter_results"] = {
                c: {"filtered": False, "severity": "safe"}
                for c in ("hate", "self_harm", "sexual", "violence")
            }
        return Reply(200, answer)

    def script_edit_refused(self) -> None:
        """The next edit is refused by the safety system (content_policy_violation)."""
        self.enqueue(
            error(
                400,
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system.",
                "content_policy_violation",
            ),
            path_contains=EDITS,
        )

    def _queue(self, *replies: Any) -> None:
        self.enqueue(*replies, path_contains=GENERATIONS)

    def script_filtered(self, filtered: int, category: str = "violence", severity: str = "high"):
        """The next generation answers 200 with its first `filtered` images withheld (Azure)."""

        def reply(request: RecordedRequest) -> Reply:
            answer = self.answer(request)
            for entry in answer.body["data"][:filtered]:
                entry.pop("url", None)
                entry.pop("b64_json", None)
                entry.pop("revised_prompt", None)
                entry["content_filter_results"][category] = {
                    "filtered": True,
                    "severity": severity,
                }
            return answer

        self._queue(reply)

    def script_content_policy(self, categories: dict[str, str] | None = None) -> None:
        """Azure's prompt refusal: content_policy_violation with inner_error details."""
        results = {
            c: {"filtered": c in (categories or {}), "severity": (categories or {}).get(c, "safe")}
            for c in ("hate", "self_harm", "sexual", "violence")
        }
        self._queue(
            error(
                400,
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system.",
                "content_policy_violation",
                inner_error={
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_results": results,
                },
            )
        )

    def script_output_filtered(self) -> None:
        """Azure: the picture was drawn, then its output filter withheld it (400 contentFilter,
        no inner_error: the prompt passed)."""
        self._queue(
            Reply(
                400,
                {
                    "created": int(time.time()),
                    "error": {"code": "contentFilter", "message": FILTERED_OUTPUT_MESSAGE},
                },
            )
        )

    def script_task_failed(self) -> None:
        """Azure DALL·E's older prompt refusal: 400 contentFilter, "Your task failed ..."."""
        self._queue(
            Reply(
                400,
                {
                    "created": int(time.time()),
                    "error": {"code": "contentFilter", "message": TASK_FAILED_MESSAGE},
                },
            )
        )

    def script_damaged_image(self) -> None:
        """The next answer's b64_json entries are not base64 (a truncated or garbled body)."""

        def reply(request: RecordedRequest) -> Reply:
            answer = self.answer(request)
            for entry in answer.body.get("data", []):
                if "b64_json" in entry:
                    entry["b64_json"] = "iVBORw0KGgo*garbled"
            return answer

        self._queue(reply)

    def script_moderation_blocked(self) -> None:
        """OpenAI gpt-image refusal."""
        self._queue(
            error(
                400,
                "Your request was rejected by the safety system. safety_violations=[violence].",
                "moderation_blocked",
            )
        )

    def script_bad_request(self, message: str, code: str | None = "invalid_value") -> None:
        self._queue(error(400, message, code))

    def script_unauthorized(self) -> None:
        self._queue(Reply(401, {"error": {"code": "401", "message": "Access denied."}}))

    def script_forbidden(self) -> None:
        self._queue(error(403, "The principal lacks the required data action.", "PermissionDenied"))

    def script_deployment_not_found(self) -> None:
        message = "The API deployment for this resource does not exist."
        self._queue(error(404, message, "DeploymentNotFound"))

    def script_model_not_found(self, model: str = "dall-e-3") -> None:
        self._queue(self._model_not_found(model))

    def rate_limit(self, retry_after_ms: int = 20, times: int = 1) -> None:
        """`times` 429 answers with retry-after-ms (and retry-after), then normal answers."""
        headers = {
            "retry-after-ms": str(retry_after_ms),
            "retry-after": str(max(1, retry_after_ms // 1000)),
        }
        self._queue(*[self._rate_limited(headers) for _ in range(times)])

    def rate_limit_forever(self, retry_after: int = 200) -> None:
        """Every generation answers 429 (a retry-after beyond what the SDK will wait)."""
        self.forever = self._rate_limited({"retry-after": str(retry_after)})

    def _rate_limited(self, headers: dict[str, str]) -> Reply:
        reply = error(
            429,
            "Requests to the Images_Generations Operation have exceeded the call rate limit "
            "of your current pricing tier. Please retry after 20 seconds.",
            "429",
        )
        reply.headers.update(headers)
        return reply

    def server_error(self, times: int = 1) -> None:
        self._queue(*[error(500, "The server had an error.", "server_error")] * times)


class FakeAzureGateway(FakeOpenAIImages):
    """A corporate gateway in front of Azure OpenAI, as the prototype met it.

    Its client-credentials token (from `/oauth/token`, HTTP Basic client id and secret) is
    accepted only in the `api-key` header, never as a Bearer token, and every generation must
    name the application in `user` as the JSON text `{"appkey": "<key>"}`.
    """

    def __init__(self, *, app_key: str = "imagine-app-key", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app_key = app_key

    def _azure_auth(self, request: RecordedRequest) -> Reply | None:
        if request.headers.get("api-key") in self.issued_tokens:
            return None
        return Reply(
            401,
            {"statusCode": 401, "message": "Access denied due to missing or invalid token."},
        )

    def _azure_generation(self, request: RecordedRequest, deployment: str) -> Reply:
        denied = self._azure_auth(request)
        if denied is None and self._app_key_of(request) != self.app_key:
            return error(403, "The application key in 'user' is missing or not recognised.", "403")
        return denied or super()._azure_generation(request, deployment)

    @staticmethod
    def _app_key_of(request: RecordedRequest) -> str | None:
        user = (request.json() or {}).get("user")
        try:
            named = json.loads(user) if isinstance(user, str) else None
        except ValueError:
            return None
        return named.get("appkey") if isinstance(named, dict) else None


def _form(request: RecordedRequest) -> dict[str, Any]:
    """A multipart form: text fields as str, file parts as (bytes, content type)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return {}
    head = f"Content-Type: {ctype}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            fields[name] = payload.decode("utf-8")
        else:
            fields[name] = (payload, part.get_content_type())
    return fields

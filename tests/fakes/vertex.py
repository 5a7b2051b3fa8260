"""A local Vertex AI: the OAuth token endpoint plus Imagen `:predict` and Gemini `:generateContent`.

google-auth signs a real RS256 JWT with the test's freshly generated service-account key and
trades it here for a bearer token; the model endpoints accept only tokens this fake issued.
Tests script filtering, refusals and errors per call with the helpers below.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes._http import FakeServer, RecordedRequest, Reply, WindowQuota
from tests.fakes.images import edited_png, image_format, png_bytes

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
API_PATH = "/publishers/google/models/"
IMAGEN_RATIOS = {"1:1", "3:4", "4:3", "9:16", "16:9"}
GEMINI_RATIOS = IMAGEN_RATIOS | {"2:3", "3:2", "4:5", "5:4", "21:9"}
PERSON_GENERATION = {"dont_allow", "allow_adult", "allow_all"}
SAFETY_SETTINGS = {
    "block_low_and_above",
    "block_medium_and_above",
    "block_only_high",
    "block_none",
    "block_most",
    "block_some",
    "block_few",
    "block_fewest",
}
PARTIAL_RAI_REASON = (
    "Your current safety filter threshold filtered out {count} generated images. You will not "
    "be charged for blocked images. Try rephrasing the prompt. If you think this was an error, "
    "send feedback. Support codes: 58061214"
)
RAI_REASON = (
    "Unable to show generated images. All images were filtered out because they violated "
    "Vertex AI's usage guidelines. You will not be charged for blocked images. Try rephrasing "
    "the prompt. If you think this was an error, send feedback. Support codes: 56562880"
)
RESPONSIBLE_AI_MESSAGE = (
    "Image generation failed with the following error: The prompt could not be submitted. "
    "This prompt contains sensitive words that violate Google's Responsible AI practices. "
    "Try rephrasing the prompt. If you think this was an error, send feedback. "
    "Support codes: {code}"
)
INT32 = (-(2**31), 2**31 - 1)  # Gemini's generationConfig.seed (a proto int32)
UINT32 = (0, 2**32 - 1)  # Imagen's parameters.seed
IMAGE_SAFETY_MESSAGE = (
    "Unable to show the generated image. The image was filtered out because it violated "
    "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. "
    "Try rephrasing the prompt. If you think this was an error, send feedback."
)
NO_IMAGE_MESSAGE = "The model did not generate an image for this prompt. Try rephrasing it."
PROMPT_BLOCKED_MESSAGE = "The prompt was blocked due to prohibited content."
QUOTA_MESSAGE = (
    "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
    "with base model: {model}. Please submit a quota increase request. "
    "https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai."
)

MAX_REQUEST_BYTES = 20 * 1024 * 1024  # inline data: a request of at most 20 MB
INLINE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_METHOD_RE = re.compile(
    r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/"
    r"([^/:]+):(predict|generateContent)$"
)
_MODEL_GET_RE = re.compile(r"^/(v1|v1beta1)/publishers/google/models/([^/:]+)$")

# Public keys of the service accounts made by `service_account_info`, by private_key_id, so
# the token endpoint can check signatures the way Google checks them against its key store.
_TRUSTED_KEYS: dict[str, tuple[str, rsa.RSAPublicKey]] = {}
_TRUST_LOCK = threading.Lock()


IMAGE_TOKENS = 1290  # Gemini's output tokens for one 1024x1024 picture


def service_account_info(
    token_uri: str, project_id: str = "test-project", *, trusted: bool = True
) -> dict[str, str]:
    """A real service-account key (fresh RSA key) in the JSON shape google-auth reads.

    With `trusted=False` the fake token endpoint does not know the key (a deleted key).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_id = secrets.token_hex(20)
    email = f"imagine-test@{project_id}.iam.gserviceaccount.com"
    if trusted:
        with _TRUST_LOCK:
            _TRUSTED_KEYS[key_id] = (email, key.public_key())
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _in_range(value: Any, bounds: tuple[int, int]) -> bool:
    low, high = bounds
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _invalid_field(field: str, proto_type: str, value: Any) -> Reply:
    """Google's answer when a JSON value does not fit the request's proto field (400)."""
    message = f"Invalid value at '{field}' ({proto_type}), {json.dumps(value)}"
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        ],
    )


def google_error(status: int, google_status: str, message: str, **extra: Any) -> Reply:
    """An error in Google's JSON shape: {"error": {"code", "message", "status", ...}}."""
    error = {"code": status, "message": message, "status": google_status, **extra}
    return Reply(status, {"error": error})


class FakeVertexAI(FakeServer):
    """Vertex AI's image endpoints and Google's OAuth token endpoint on one loopback port."""

    def __init__(self, project: str | None = "test-project") -> None:
        super().__init__()
        self.project = project  # other projects answer 403 PERMISSION_DENIED; None: any
        self.enhance_prompts = False  # Imagen: return a rewritten `prompt` with each image
        self.token_latency = 0.0  # widen the window in which clients might race on refresh
        self.issued_tokens: set[str] = set()
        self.quota: WindowQuota | None = None  # enforced on the model calls when set
        self.received_pictures: list[bytes] = []  # the input pictures of edits, as decoded
        self._counter = itertools.count()

    def reset(self) -> None:
        """Forget scripts and calls so one fake can serve a whole test module.

        Issued tokens stay valid, as Google's do: clients that outlive a test keep working.
        """
        super().reset()
        self.enhance_prompts = False
        self.token_latency = 0.0
        self.quota = None
        self.received_pictures = []

    # -- observations ---------------------------------------------------------------------
    @property
    def token_requests(self) -> int:
        return len(self.calls("/token"))

    def api_calls(self) -> list[RecordedRequest]:
        return self.calls(API_PATH)

    # -- dispatch: authentication comes before any scripted reply ---------------------------
    def _dispatch(self, request: RecordedRequest) -> Reply:
        if request.path != "/token" and not self._authorized(request):
            with self._lock:
                self.requests.append(request)
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
            )
        return super()._dispatch(request)

    def _authorized(self, request: RecordedRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            return scheme == "Bearer" and token in self.issued_tokens

    def answer(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == "/token":
            return self._token(request)
        match = _METHOD_RE.match(request.path)
        if match and request.method == "POST":
            _, project, _, model, method = match.groups()
            if self.quota is not None and self.quota.take() is not None:
                # RESOURCE_EXHAUSTED, and no Retry-After: Vertex AI never sends one
                return google_error(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE.format(model=model))
            if self.project is not None and project != self.project:
                return self._permission_denied(request)
            if method == "predict":
                if not model.startswith(("imagen", "imagegeneration")):
                    return self._model_not_found(request)
                return self._predict(request)
            if not model.startswith("gemini"):
                return self._model_not_found(request)
            return self._generate_content(request)
        match = _MODEL_GET_RE.match(request.path)
        if match and request.method == "GET":
            model = match.group(2)
            return Reply(
                200,
                {
                    "name": f"publishers/google/models/{model}",
                    "versionId": "001",
                    "openSourceCategory": "PROPRIETARY",
                    "launchStage": "GA",
                },
            )
        return google_error(404, "NOT_FOUND", "The requested URL was not found on this server.")

    # -- OAuth ------------------------------------------------------------------------------
    def _token(self, request: RecordedRequest) -> Reply:
        if self.token_latency:
            time.sleep(self.token_latency)
        form = request.form()
        if form.get("grant_type") != JWT_GRANT:
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid"})
        problem = self._check_assertion(form.get("assertion", ""))
        if problem:
            return Reply(400, {"error": "invalid_grant", "error_description": problem})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.issued_tokens.add(token)
        return Reply(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _check_assertion(self, assertion: str) -> str | None:
        """Why Google would refuse this JWT, or None: signature, issuer, audience, scope, time."""
        try:
            head_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except ValueError:
            return "Invalid JWT."
        if header.get("alg") != "RS256":
            return "Invalid JWT: unsupported algorithm."
        with _TRUST_LOCK:
            known = _TRUSTED_KEYS.get(str(header.get("kid")))
        if known is None:
            return "Invalid JWT Signature."
        email, public_key = known
        try:
            public_key.verify(
                signature,
                f"{head_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != email:
            return "Invalid JWT: issuer does not match the key."
        # google-auth always names Google's token endpoint as the audience, wherever it posts.
        if claims.get("aud") not in {GOOGLE_TOKEN_URI, f"{self.url}/token"}:
            return "Invalid JWT: audience is not the token endpoint."
        if SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: missing scope."
        if not claims.get("iat", now + 1) - 300 <= now < claims.get("exp", 0):
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        return None

    # -- default answers ----------------------------------------------------------------------
    def _predict(self, request: RecordedRequest) -> Reply:
        body = request.json() or {}
        instances = body.get("instances") or []
        prompt = instances[0].get("prompt") if instances and isinstance(instances[0], dict) else ""
        params = body.get("parameters") or {}
        problem = self._imagen_problem(prompt, params)
        if problem:
            return google_error(400, "INVALID_ARGUMENT", problem)
        seed = params.get("seed") if params.get("addWatermark") is False else None
        salt = seed if seed is not None else next(self._counter)
        predictions = []
        for i in range(int(params.get("sampleCount", 4))):
            prediction = {
                "mimeType": "image/png",
                "bytesBase64Encoded": base64.b64encode(png_bytes(f"{prompt}|{salt}|{i}")).decode(),
            }
            if self.enhance_prompts:
                prediction["prompt"] = enhanced_prompt(prompt)
            predictions.append(prediction)
        return Reply(200, {"predictions": predictions})

    @staticmethod
    def _imagen_problem(prompt: Any, params: dict[str, Any]) -> str | None:
        if not isinstance(prompt, str) or not prompt.strip():
            return "The prompt is empty."
        count = params.get("sampleCount", 4)
        if not isinstance(count, int) or not 1 <= count <= 4:
            return f"sampleCount must be between 1 and 4, got {count}."
        if params.get("aspectRatio", "1:1") not in IMAGEN_RATIOS:
            return f"Unsupported aspect ratio: {params.get('aspectRatio')}."
        if params.get("personGeneration", "allow_adult") not in PERSON_GENERATION:
            return f"Invalid personGeneration: {params.get('personGeneration')}."
        if (
            str(params.get("safetySetting", "block_medium_and_above")).lower()
            not in SAFETY_SETTINGS
        ):
            return f"Invalid safetySetting: {params.get('safetySetting')}."
        if "seed" in params and not _in_range(params["seed"], UINT32):
            return (
                "Image generation failed with the following error: seed must be an unsigned "
                f"32-bit integer (0 to {UINT32[1]}), got {params['seed']}."
            )
        return None

    def _generate_content(self, request: RecordedRequest) -> Reply:
        if len(request.body) > MAX_REQUEST_BYTES:
            return google_error(
                400,
                "INVALID_ARGUMENT",
                f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.",
            )
        body = request.json() or {}
        try:
            parts_in = body["contents"][0]["parts"]
            text = next(p["text"] for p in parts_in if isinstance(p.get("text"), str))
        except (KeyError, IndexError, TypeError, StopIteration, AttributeError):
            return google_error(400, "INVALID_ARGUMENT", "contents is not specified.")
        pictures = []
        for part in parts_in:
            inline = part.get("inlineData")
            if inline is None:
                continue
            try:
                data = base64.b64decode(inline.get("data") or "", validate=True)
            except ValueError:
                return _invalid_field("inline_data.data", "TYPE_BYTES", inline.get("data"))
            fmt = image_format(data)
            if fmt is None or INLINE_TYPES.get(fmt) != inline.get("mimeType"):
                return google_error(
                    400, "INVALID_ARGUMENT", "Unable to process input image. Please retry."
                )
            pictures.append(data)
        if pictures:
            with self._lock:
                self.received_pictures.extend(pictures)
        config = body.get("generationConfig") or {}
        modalities = config.get("responseModalities") or ["TEXT"]
        if "IMAGE" not in modalities or not set(modalities) <= {"TEXT", "IMAGE"}:
            return google_error(400, "INVALID_ARGUMENT", "responseModalities must include IMAGE.")
        ratio = (config.get("imageConfig") or {}).get("aspectRatio", "1:1")
        if ratio not in GEMINI_RATIOS:
            return google_error(400, "INVALID_ARGUMENT", f"Unsupported aspect ratio: {ratio}.")
        seed = config.get("seed")
        if seed is not None and not _in_range(seed, INT32):
            return _invalid_field("generation_config.seed", "TYPE_INT32", seed)
        salt = seed if seed is not None else next(self._counter)
        drawn = edited_png(pictures[0], text) if pictures else png_bytes(f"{text}|{salt}")
        image = base64.b64encode(drawn).decode()
        parts: list[dict[str, Any]] = []
        if "TEXT" in modalities:
            parts.append({"text": "Here is your image."})
        parts.append({"inlineData": {"mimeType": "image/png", "data": image}})
        return Reply(
            200,
            {
                "candidates": [
                    {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
                ],
                "usageMetadata": {  # as Gemini reports it: a 1K picture is 1290 tokens out
                    "promptTokenCount": len(text.split()),
                    "candidatesTokenCount": IMAGE_TOKENS,
                    "totalTokenCount": len(text.split()) + IMAGE_TOKENS,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": len(text.split())}],
                    "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": IMAGE_TOKENS}],
                },
                "modelVersion": request.path.rsplit("/", 1)[-1].split(":")[0],
            },
        )

    def _permission_denied(self, request: RecordedRequest) -> Reply:
        resource = request.path.split("/", 2)[-1].split(":")[0]
        return google_error(
            403,
            "PERMISSION_DENIED",
            f"Permission 'aiplatform.endpoints.predict' denied on resource "
            f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "aiplatform.googleapis.com",
                }
            ],
        )

    @staticmethod
    def _model_not_found(request: RecordedRequest) -> Reply:
        resource = request.path.split("/", 2)[-1].split(":")[0]
        return google_error(404, "NOT_FOUND", f"Publisher Model `{resource}` was not found.")

    # -- scripting helpers (each enqueues replies for the next model calls) -------------------
    def _queue_replies(self, reply: Any, times: int) -> None:
        self.enqueue(*[reply] * times, path_contains=API_PATH)

    def fail(
        self,
        status: int,
        google_status: str,
        message: str,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        reply = google_error(status, google_status, message)
        reply.headers.update(headers or {})
        self._queue_replies(reply, times)

    def unauthenticated(self, times: int = 3) -> None:
        """401s; google-auth refreshes and retries twice on a 401, hence three by default."""
        self.fail(
            401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", times=times
        )

    def permission_denied(self, times: int = 1) -> None:
        self._queue_replies(self._permission_denied, times)

    def service_disabled(self, times: int = 1) -> None:
        reply = google_error(
            403,
            "PERMISSION_DENIED",
            "Vertex AI API has not been used in project test-project before or it is disabled.",
            details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}
            ],
        )
        self._queue_replies(reply, times)

    def not_found(self, times: int = 1) -> None:
        self._queue_replies(self._model_not_found, times)

    def quota_exceeded(self, times: int = 1, retry_after: str | None = None) -> None:
        """429 RESOURCE_EXHAUSTED, as Vertex sends it: no Retry-After unless asked for."""

        def reply(request: RecordedRequest) -> Reply:
            model = request.path.rsplit("/", 1)[-1].split(":")[0]
            r = google_error(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGE.format(model=model))
            if retry_after is not None:
                r.headers["Retry-After"] = retry_after
            return r

        self._queue_replies(reply, times)

    def server_error(self, status: int = 500, times: int = 1) -> None:
        names = {500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
        self.fail(status, names.get(status, "UNKNOWN"), "Internal error encountered.", times=times)

    def refuse_prompt(self, support_code: str = "42876398") -> None:
        """Imagen's outright refusal: 400 INVALID_ARGUMENT citing Responsible AI practices."""
        message = RESPONSIBLE_AI_MESSAGE.format(code=support_code)
        self.fail(400, "INVALID_ARGUMENT", message)

    def filter_some(self, kept: int, reason: str = PARTIAL_RAI_REASON) -> None:
        """Imagen: `kept` images survive, plus one entry carrying only `raiFilteredReason`."""

        def reply(request: RecordedRequest) -> Reply:
            answer = self._predict(request)
            predictions = answer.body["predictions"]
            filtered = len(predictions) - kept
            predictions = predictions[:kept]
            predictions.append({"raiFilteredReason": reason.format(count=filtered)})
            return Reply(200, {"predictions": predictions})

        self._queue_replies(reply, 1)

    def filter_all(
        self, include_reason: bool | None = None, *, empty_predictions: bool = False
    ) -> None:
        """Imagen: every image filtered. The reason appears when the request asked for it
        (`includeRaiReason`) unless `include_reason` forces it either way."""

        def reply(request: RecordedRequest) -> Reply:
            if empty_predictions:
                return Reply(200, {"predictions": []})
            asked = (request.json() or {}).get("parameters", {}).get("includeRaiReason", False)
            if include_reason if include_reason is not None else asked:
                return Reply(200, {"predictions": [{"raiFilteredReason": RAI_REASON}]})
            return Reply(200, {})

        self._queue_replies(reply, 1)

    def block_prompt(
        self,
        reason: str = "PROHIBITED_CONTENT",
        times: int = 1,
        message: str | None = PROMPT_BLOCKED_MESSAGE,
    ) -> None:
        """Gemini: the prompt itself is blocked (promptFeedback.blockReason, no candidates)."""
        feedback = {"blockReason": reason}
        if message:
            feedback["blockReasonMessage"] = message
        body = {
            "promptFeedback": feedback,
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        }
        self._queue_replies(Reply(200, body), times)

    def finish_without_image(
        self,
        finish_reason: str = "IMAGE_SAFETY",
        times: int = 1,
        message: str | None = None,
        text: str | None = None,
    ) -> None:
        """Gemini: a candidate that stopped for `finish_reason` with no image part, explained
        in `finishMessage` (by default Google's wording for the reason) and/or a text part."""
        if message is None:
            message = NO_IMAGE_MESSAGE if finish_reason == "NO_IMAGE" else IMAGE_SAFETY_MESSAGE
        candidate: dict[str, Any] = {"content": {"role": "model"}, "finishReason": finish_reason}
        if message:
            candidate["finishMessage"] = message
        if text:
            candidate["content"]["parts"] = [{"text": text}]
        body = {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        }
        self._queue_replies(Reply(200, body), times)

    def damaged_image(self, times: int = 1) -> None:
        """The normal answer, with each image's base64 replaced by text that does not decode."""

        def reply(request: RecordedRequest) -> Reply:
            answer = self.answer(request)
            for prediction in answer.body.get("predictions", []):
                prediction["bytesBase64Encoded"] = "not*base64!"
            for candidate in answer.body.get("candidates", []):
                for part in candidate["content"]["parts"]:
                    if "inlineData" in part:
                        part["inlineData"]["data"] = "not*base64!"
            return answer

        self._queue_replies(reply, times)

    def slow(self, delay: float, times: int = 1) -> None:
        """The normal answer, after `delay` seconds."""
        self._queue_replies(lambda request: replace(self.answer(request), delay=delay), times)

    def reject_token_requests(self, times: int = 1) -> None:
        """The token endpoint refuses the grant (a deleted or disabled key)."""
        reply = Reply(
            400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )
        self.enqueue(*[reply] * times, path_contains="/token")


def enhanced_prompt(prompt: str) -> str:
    """What the fake's prompt enhancer makes of `prompt` (Imagen 4 rewrites prompts)."""
    return f"{prompt}, highly detailed, soft natural light, 35mm photograph"

"""The shared generation service: validate -> providers (concurrently) -> store -> results.

It knows nothing of Slack. The Slack app, the command line and the tests all call
`GenerationService.generate`, which is safe to call from many threads at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import requests
from requests.adapters import HTTPAdapter

from bot.config import Config
from bot.generation.inputs import fit_picture
from bot.generation.pacing import NoPacer, Pacer, submit_in_context
from bot.generation.pricing import PriceTable
from bot.generation.providers import ImageProvider, build_providers, resolve_provider_name
from bot.generation.stores.base import ImageStore
from bot.generation.types import (
    ASPECT_RATIOS,
    MAX_IMAGES,
    CannotEditError,
    ConfigurationError,
    GeneratedImage,
    ImageRequest,
    ImagineError,
    InvalidRequestError,
    PictureGoneError,
    ProviderResult,
    StoredImage,
    StoreError,
)

log = logging.getLogger("imagine.generation")


class GenerationService:
    """Runs providers and stores their images. Build once per process."""

    def __init__(
        self,
        providers: dict[str, ImageProvider],
        store: ImageStore | None = None,
        *,
        keep_provider_urls: bool = False,
        download_timeout: float = 60.0,
        max_workers: int = 64,
        pacer: Pacer | None = None,
        keep_bytes_if_store_fails: bool = False,
        prices: PriceTable | None = None,
    ) -> None:
        """`keep_bytes_if_store_fails`: the front end can show pictures without a URL (Slack
        uploads them), so a store that fails keeps the bytes rather than losing the picture."""
        self.providers = providers
        self.prices = prices or PriceTable()
        self.use_pacer(pacer or NoPacer())
        self.store = store
        self.keep_bytes_if_store_fails = keep_bytes_if_store_fails
        self.keep_provider_urls = keep_provider_urls
        self.download_timeout = download_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="provider")
        self._http = requests.Session()
        self._http.mount("https://", HTTPAdapter(pool_maxsize=max_workers))
        self._http.mount("http://", HTTPAdapter(pool_maxsize=max_workers))

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        pacer: Pacer | None = None,
        store: ImageStore | None | str = "default",
    ) -> GenerationService:
        """The service as configured; `store` overrides GCS_BUCKET (the CLI's --out)."""
        if store == "default":
            store = None
            if config.store.gcs_bucket:
                from bot.generation.stores.gcs import GcsImageStore

                store = GcsImageStore.from_config(config)
        return cls(
            build_providers(config),
            store,
            keep_provider_urls=config.store.keep_provider_urls,
            download_timeout=config.retry.timeout,
            pacer=pacer,
            prices=PriceTable(config.governance.prices),
        )

    def use_pacer(self, pacer: Pacer) -> None:
        """Every HTTP call to a provider waits its turn at `pacer` (its quota)."""
        self.pacer = pacer
        for provider in self.providers.values():
            provider.pacer = pacer

    def quotas(self) -> dict[str, float]:
        """Provider name -> requests per minute, for the providers whose quota is set."""
        return {
            name: p.requests_per_minute
            for name, p in self.providers.items()
            if p.requests_per_minute is not None
        }

    # -- lookup -------------------------------------------------------------------------------
    def provider(self, word: str) -> ImageProvider:
        """The provider for a name or alias; InvalidRequestError listing the choices otherwise."""
        name = resolve_provider_name(word)
        if name is None or name not in self.providers:
            raise InvalidRequestError(
                f"Unknown provider '{word}'. Choose one of: {', '.join(self.providers)}."
            )
        return self.providers[name]

    def configured_providers(self) -> list[str]:
        return [name for name, p in self.providers.items() if p.configured]

    # -- validation ---------------------------------------------------------------------------
    def validate(self, request: ImageRequest, provider_names: Sequence[str]) -> None:
        """Raise InvalidRequestError / ConfigurationError before any network call."""
        if not request.prompt.strip():
            raise InvalidRequestError("The prompt is empty: describe the picture you want.")
        if not 1 <= request.n <= MAX_IMAGES:
            raise InvalidRequestError(
                f"n must be from 1 to {MAX_IMAGES}; you asked for {request.n}."
            )
        if request.aspect_ratio not in ASPECT_RATIOS:
            raise InvalidRequestError(
                f"Aspect ratio {request.aspect_ratio} is not supported; "
                f"use one of {', '.join(ASPECT_RATIOS)}."
            )
        if not provider_names:
            raise ConfigurationError(
                "No image provider is configured: set the Google or OpenAI variables "
                "(see `python -m bot check`)."
            )
        for word in provider_names:
            provider = self.provider(word)
            missing = provider.missing_settings()
            if missing:
                raise ConfigurationError(
                    f"{provider.name} is not configured here: set {', '.join(missing)}.",
                    setting=missing[0],
                    provider=provider.name,
                )
            provider.validate(request)

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self,
        request: ImageRequest,
        provider_names: Sequence[str],
        *,
        store: ImageStore | None | str = "default",
    ) -> list[ProviderResult]:
        """One result per provider, in the order asked; providers run concurrently.

        Validation errors raise; a provider's failure is returned in its result so that a
        comparison still shows the other provider's pictures. `store=None` keeps the bytes
        without storing them (the Slack app then uploads them into Slack).
        """
        self.validate(request, provider_names)
        target = self.store if store == "default" else store
        providers = [self.provider(word) for word in provider_names]
        futures = [
            submit_in_context(self._pool, self._run_one, p, request, target) for p in providers[1:]
        ]
        first = self._run_one(providers[0], request, target)
        return [first, *(f.result() for f in futures)]

    # -- edits -------------------------------------------------------------------------------
    def edit(self, prompt: str, provider_word: str, image: bytes) -> ProviderResult:
        """`image` edited as `prompt` says by one provider, stored like any picture. Errors
        (a model that cannot edit, an unreadable picture, the safety filter) are returned in
        the result, each with its sentence."""
        provider = self.provider(provider_word)
        result = ProviderResult(provider=provider.name, model=provider.model)
        started = time.monotonic()
        try:
            self.validate(ImageRequest(prompt=prompt), [provider.name])
            if not provider.can_edit:
                raise CannotEditError(self._cannot_edit(provider), provider=provider.name)
            data, mime = fit_picture(
                image, max_bytes=provider.max_edit_bytes, max_side=provider.max_edit_side
            )
            output = provider.edit(prompt, data, mime)
            result.timings["provider"] = round(time.monotonic() - started, 3)
            result.model = output.model
            result.notes = list(output.notes)
            result.images = [self._store_image(i, self.store) for i in output.images[:1]]
        except ImagineError as err:
            err.provider = err.provider or provider.name
            result.error = err
        except Exception:
            log.exception("unexpected error from provider=%s (edit)", provider.name)
            result.error = ImagineError(
                f"{provider.name} failed unexpectedly; the error is in the app's log.",
                provider=provider.name,
            )
        result.timings["total"] = round(time.monotonic() - started, 3)
        return result

    def _cannot_edit(self, provider: ImageProvider) -> str:
        """One sentence naming what can edit: another configured provider, or the setting."""
        able = [
            name
            for name, other in self.providers.items()
            if other is not provider and other.configured and other.can_edit
        ]
        instead = f"start your reply with `{able[0]}:`, or " if able else ""
        return (
            f"{provider.model} cannot edit pictures; {instead}{provider.edit_hint()} "
            "to edit with it."
        )

    def picture(self, ref: str) -> bytes:
        """The bytes of a picture kept as `ref` (a store reference, or an http(s) URL)."""
        if self.store is not None:
            data = self.store.get(ref)
            if data is not None:
                return data
        if ref.startswith(("https://", "http://")):
            try:
                return self._download(ref)
            except StoreError:
                raise PictureGoneError(
                    "That picture can no longer be downloaded, so I cannot edit it."
                ) from None
        raise PictureGoneError("That picture is no longer kept anywhere I can read it.")

    def _run_one(
        self, provider: ImageProvider, request: ImageRequest, store: ImageStore | None
    ) -> ProviderResult:
        result = ProviderResult(provider=provider.name, model=provider.model)
        started = time.monotonic()
        try:
            output = provider.generate(request)
            result.timings["provider"] = round(time.monotonic() - started, 3)
            result.model = output.model
            result.revised_prompt = output.revised_prompt
            result.notes = list(output.notes)
            result.cost_usd = self.prices.cost(
                provider.name,
                output.model,
                images=len(output.images),
                quality=output.quality,
                size=output.size,
                usage=output.usage,
            )
            store_started = time.monotonic()
            result.images = [self._store_image(image, store) for image in output.images]
            result.timings["store"] = round(time.monotonic() - store_started, 3)
        except ImagineError as err:
            err.provider = err.provider or provider.name
            result.error = err
        except Exception:  # a bug must not take the other provider's pictures down with it
            log.exception("unexpected error from provider=%s", provider.name)
            result.error = ImagineError(
                f"{provider.name} failed unexpectedly; the error is in the app's log.",
                provider=provider.name,
            )
        result.timings["total"] = round(time.monotonic() - started, 3)
        log.debug(
            "generation provider=%s model=%s n=%d images=%d outcome=%s provider_s=%s "
            "store_s=%s total_s=%s",
            provider.name,
            result.model,
            request.n,
            len(result.images),
            result.error.kind if result.error else "ok",
            result.timings.get("provider"),
            result.timings.get("store"),
            result.timings["total"],
        )
        return result

    def _store_image(self, image: GeneratedImage, store: ImageStore | None) -> StoredImage:
        if image.url is not None and self.keep_provider_urls:
            return StoredImage(url=image.url, mime_type=image.mime_type)
        data = image.data if image.data is not None else self._download(image.url or "")
        return self.put(data, image.mime_type, store)

    def put(
        self, data: bytes, mime_type: str, store: ImageStore | None | str = "default"
    ) -> StoredImage:
        """The bytes in `store` (the service's by default), for a URL; without a store, kept
        as bytes. A store that fails (unreachable, 5xx after its retries, 403) raises
        StoreError, or, with `keep_bytes_if_store_fails`, keeps the bytes (one log line)."""
        target = self.store if store == "default" else store
        if target is None:
            return StoredImage(url=None, mime_type=mime_type, data=data)
        try:
            return target.put(data, mime_type)
        except ImagineError as err:
            if not self.keep_bytes_if_store_fails:
                raise
            log.warning("image store failed, the picture is uploaded instead: %s", err.message)
            return StoredImage(url=None, mime_type=mime_type, data=data)

    def link(self, ref: str) -> str | None:
        """A URL people can open now for a picture kept as `ref` (`StoredImage.ref`, or a URL
        when it had none): the store renews its own references (signed URLs expire); any
        other http(s) URL is returned as it is; None when nothing here can open it."""
        if self.store is not None:
            url = self.store.url_for(ref)
            if url:
                return url
        return ref if ref.startswith(("https://", "http://")) else None

    def image_bytes(self, image: StoredImage) -> bytes:
        """The picture's bytes: kept from generation, or fetched from its (provider) URL."""
        return image.data if image.data is not None else self._download(image.url or "")

    def _download(self, url: str) -> bytes:
        """Copy a provider's short-lived URL (Azure: 24 h) so the picture outlives it."""
        try:
            response = self._http.get(url, timeout=self.download_timeout)
            response.raise_for_status()
        except requests.RequestException as err:
            status = getattr(err.response, "status_code", None)
            raise StoreError(
                "The image was generated but could not be downloaded from the provider"
                + (f" (HTTP {status})." if status else ".")
            ) from None
        return response.content

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

"""An OAuth2 client-credentials token, fetched once and shared by every thread.

Corporate gateways in front of Azure OpenAI often hand out bearer tokens from their own token
URL (HTTP Basic client id/secret, `grant_type=client_credentials`) instead of API keys. The
original prototype fetched one per client; here one cached token serves the whole process,
is renewed shortly before it expires, and is fetched by exactly one thread when many need it
at the same moment.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

from bot.generation.types import ConfigurationError, ProviderUnavailableError

DEFAULT_LIFETIME = 3600.0  # when the server omits expires_in
MAX_MARGIN = 60.0  # renew this long before expiry...
MARGIN_FRACTION = 0.1  # ...or 10% of the lifetime when the token is short-lived


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic() after which we fetch a new one


class ClientCredentialsToken:
    """A thread-safe cache of one client-credentials access token.

    `get()` returns the cached token or fetches a new one; `invalidate(token)` drops it after
    the API refused it (only if it is still the cached one, so twenty threads that all saw the
    same 401 cause one refetch, not twenty).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        timeout: float = 30.0,
        provider: str | None = None,
        settings: str = "AZURE_OPENAI_CLIENT_ID and AZURE_OPENAI_CLIENT_SECRET",
        url_setting: str = "AZURE_OPENAI_TOKEN_URL",
    ) -> None:
        self._url = token_url
        self._auth = (client_id, client_secret)
        self._scope = scope
        self._timeout = timeout
        self._provider = provider
        self._settings = settings
        self._url_setting = url_setting
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.fetches = 0  # how many times we went to the token URL (for checks and tests)

    def get(self) -> str:
        """A valid access token; fetches (once, whatever the number of callers) when needed."""
        token = self._token
        if token is not None and time.monotonic() < token.renew_at:
            return token.value
        with self._lock:
            token = self._token
            if token is not None and time.monotonic() < token.renew_at:
                return token.value  # another thread fetched it while we waited
            self._token = self._fetch()
            return self._token.value

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is `token`, when given)."""
        with self._lock:
            if self._token is not None and (token is None or self._token.value == token):
                self._token = None

    def _fetch(self) -> _Token:
        data = {"grant_type": "client_credentials"}
        if self._scope:
            data["scope"] = self._scope
        started = time.monotonic()
        try:
            response = self._session.post(
                self._url,
                data=data,
                auth=self._auth,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException:
            raise ProviderUnavailableError(
                f"Could not reach the token service; check {self._url_setting} and try again.",
                provider=self._provider,
            ) from None
        finally:
            self.fetches += 1
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailableError(
                f"The token service at {self._url_setting} is failing "
                f"(HTTP {response.status_code}); try again shortly.",
                provider=self._provider,
            )
        if response.status_code in (400, 401, 403):
            raise ConfigurationError(
                f"The token service refused our client credentials; check {self._settings}"
                f" (and {self._url_setting}).",
                setting=self._settings,
                provider=self._provider,
            )
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in") or DEFAULT_LIFETIME)
        except (ValueError, KeyError, TypeError):
            value, lifetime = None, 0.0
        if response.status_code != 200 or not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"{self._url_setting} did not answer with an access token "
                f"(HTTP {response.status_code}); check {self._url_setting}.",
                setting=self._url_setting,
                provider=self._provider,
            )
        margin = min(MAX_MARGIN, lifetime * MARGIN_FRACTION)
        return _Token(value=value, renew_at=started + lifetime - margin)

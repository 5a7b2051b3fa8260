"""Google Cloud Storage image store: unique object names and V4 signed (or public) URLs.

Slack image blocks need a URL Slack can fetch. Keeping the bytes in our own bucket outlives the
providers' short-lived URLs. Names are random (never derived from the prompt, which may be
private) and uploads carry `ifGenerationMatch=0`, so nothing is ever overwritten.

Signing: with `GOOGLE_SERVICE_ACCOUNT_JSON` the key signs locally. With Application Default
Credentials that hold no private key (Cloud Run, GCE), the store signs through IAM `signBlob`,
which needs the service account to hold `roles/iam.serviceAccountTokenCreator` on itself.
Public mode needs the bucket to grant `allUsers` the `roles/storage.objectViewer` role.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import google.auth
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials, Signing
from google.auth.transport.requests import AuthorizedSession, Request
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from bot.config import Config, GoogleConfig, RetryConfig, StoreConfig
from bot.generation.stores.base import ImageStore, extension_for
from bot.generation.types import (
    ConfigurationError,
    ImagineError,
    PictureGoneError,
    StoredImage,
    StoreError,
)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
GS = "gs://"  # an object's reference, as gsutil names it: gs://bucket/object
POOL_SIZE = 64  # connections kept per host: many worker threads upload at once
CREDENTIALS_HINT = "GOOGLE_SERVICE_ACCOUNT_JSON (or the Application Default Credentials)"
# google-cloud-storage 3.11+ fetches each bucket's metadata (storage.buckets.get) in the
# background on its first object call, to label OpenTelemetry spans we do not export. The
# object roles the README asks for do not grant it: every start would log a denied call in the
# audit logs, and the fetch shares the upload connections. Its maintainers' switch turns it
# off; an operator who sets the variable keeps their choice.
NO_BUCKET_PROBE = ("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
_NEEDS_SERVICE_ACCOUNT = (
    "Signed GCS URLs need service-account credentials; set GOOGLE_SERVICE_ACCOUNT_JSON "
    "or GCS_URL_MODE=public."
)


class GcsImageStore(ImageStore):
    """Uploads image bytes to `GCS_BUCKET` and returns a URL Slack can fetch.

    One instance serves every thread: the client, bucket and credentials are built once,
    lazily (so building the store never touches the network), and reused.
    """

    name = "gcs"

    def __init__(self, store: StoreConfig, google: GoogleConfig, retry: RetryConfig) -> None:
        self._settings = store
        self._google = google
        self._timeout = retry.timeout
        self._retry: Retry = DEFAULT_RETRY.with_delay(
            initial=retry.backoff, maximum=retry.max_wait
        ).with_timeout(retry.timeout)
        host = (store.storage_emulator_host or "").strip().rstrip("/")
        self._emulator = (host if "://" in host else f"http://{host}") if host else None
        self._lock = threading.Lock()  # guards building the client and the signer
        self._token_lock = threading.Lock()  # guards refreshing the signer's token
        self._bucket: storage.Bucket | None = None
        self._signer: Credentials | None = None
        self._auth_request: Request | None = None

    @classmethod
    def from_config(cls, config: Config) -> GcsImageStore:
        return cls(config.store, config.google, config.retry)

    # -- ImageStore -------------------------------------------------------------------------
    def missing_settings(self) -> list[str]:
        return [] if self._settings.gcs_bucket else ["GCS_BUCKET"]

    def put(self, data: bytes, mime_type: str) -> StoredImage:
        """Upload under a fresh name; raises StoreError only, naming the setting to check."""
        try:
            bucket = self._connect()
            blob = bucket.blob(self._object_name(mime_type))
            url, expires_in = self._url(blob)  # first: a signing failure leaves no orphan
            blob.cache_control = self._cache_control()
            blob.upload_from_string(
                data,
                content_type=mime_type,
                if_generation_match=0,  # never overwrite an existing object
                timeout=self._timeout,
                retry=self._retry,
            )
        except ConfigurationError as err:
            raise StoreError(err.message) from err
        except ImagineError:
            raise
        except Exception as err:  # the SDKs raise many types; never leak their text
            raise StoreError(self._describe(err, "upload the image").message) from err
        ref = f"{GS}{bucket.name}/{blob.name}"
        return StoredImage(url=url, mime_type=mime_type, data=data, expires_in=expires_in, ref=ref)

    def url_for(self, ref: str) -> str | None:
        """A fresh URL for an object named `gs://bucket/object`: newly signed (signing is local
        with a key, one IAM call without), or public; None for anything else."""
        bucket_name, _, name = ref.removeprefix(GS).partition("/")
        if not ref.startswith(GS) or not bucket_name or not name:
            return None
        try:
            client = self._connect().client
            return self._url(client.bucket(bucket_name).blob(name))[0]
        except ConfigurationError as err:
            raise StoreError(err.message) from err
        except ImagineError:
            raise
        except Exception as err:  # never leak the SDK's text
            raise StoreError(self._describe(err, "sign the image URL").message) from err

    def delete(self, ref: str) -> bool:
        """Delete `gs://bucket/object`; an object already gone (404) is False, not an error.
        Needs `storage.objects.delete` (roles/storage.objectAdmin, or a custom role)."""
        from google.api_core.exceptions import NotFound

        bucket_name, _, name = ref.removeprefix(GS).partition("/")
        if not ref.startswith(GS) or not bucket_name or not name:
            return False
        try:
            client = self._connect().client
            client.bucket(bucket_name).blob(name).delete(timeout=self._timeout, retry=self._retry)
        except NotFound:
            return False
        except ConfigurationError as err:
            raise StoreError(err.message) from err
        except ImagineError:
            raise
        except Exception as err:  # never leak the SDK's text
            raise StoreError(self._describe(err, "delete the image").message) from err
        return True

    def get(self, ref: str) -> bytes | None:
        bucket_name, _, name = ref.removeprefix(GS).partition("/")
        if not ref.startswith(GS) or not bucket_name or not name:
            return None
        try:
            client = self._connect().client
            return client.bucket(bucket_name).blob(name).download_as_bytes()
        except api_exceptions.NotFound:
            raise PictureGoneError(
                "That picture is no longer in the bucket (deleted or expired), so I cannot edit it."
            ) from None
        except ImagineError:
            raise
        except Exception as err:  # never leak the SDK's text
            raise StoreError(self._describe(err, "read the picture").message) from err

    def check(self) -> str:
        """List one object (needs only object read access) and, if signed, sign one URL."""
        try:
            bucket = self._connect()
            page = bucket.client.list_blobs(
                bucket, max_results=1, timeout=self._timeout, retry=self._retry
            )
            list(page)
            self._url(bucket.blob("imagine-check"))  # proves signing works, locally or via IAM
        except ImagineError:
            raise
        except Exception as err:
            raise self._describe(err, "reach the bucket") from err
        return f"bucket {bucket.name} reachable; {self._url_kind()}"

    # -- naming and URLs --------------------------------------------------------------------
    def _object_name(self, mime_type: str) -> str:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        name = f"{day}/{uuid.uuid4().hex}.{extension_for(mime_type)}"
        prefix = self._settings.gcs_prefix.strip("/")
        return f"{prefix}/{name}" if prefix else name

    def _signed(self) -> bool:
        return self._settings.gcs_url_mode != "public"

    def _cache_control(self) -> str:
        if self._signed():
            return f"private, max-age={self._settings.gcs_signed_url_ttl}"
        return "public, max-age=31536000, immutable"

    def _url_kind(self) -> str:
        if not self._signed():
            return "public URLs (the bucket must grant allUsers roles/storage.objectViewer)"
        signer = self._signing_credentials()
        if isinstance(signer, Signing):
            return f"V4 URLs signed by {signer.signer_email}"
        return f"V4 URLs signed through IAM signBlob as {self._iam_identity(signer)[1]}"

    def _url(self, blob: storage.Blob) -> tuple[str, float | None]:
        """The URL people open, and how many seconds it stays valid (None: forever)."""
        if not self._signed():
            return blob.public_url, None  # type: ignore[return-value]
        ttl = self._settings.gcs_signed_url_ttl
        options: dict[str, object] = {
            "version": "v4",  # the library's default is v2
            "expiration": timedelta(seconds=ttl),
            "method": "GET",
        }
        if self._emulator:
            options["api_access_endpoint"] = self._emulator
        signer = self._signing_credentials()
        options["credentials"] = signer
        if not isinstance(signer, Signing):
            token, email = self._iam_identity(signer)
            options.update(service_account_email=email, access_token=token)
        try:
            url = blob.generate_signed_url(**options)
        except auth_exceptions.TransportError as err:
            raise ConfigurationError(
                "Could not sign the image URL through IAM signBlob; grant the service account "
                "roles/iam.serviceAccountTokenCreator, set GOOGLE_SERVICE_ACCOUNT_JSON, "
                "or set GCS_URL_MODE=public.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
            ) from err
        return url, ttl

    # -- clients and credentials ------------------------------------------------------------
    def _connect(self) -> storage.Bucket:
        """Build the client and bucket once; later calls reuse them."""
        if self._bucket is not None:
            return self._bucket
        with self._lock:
            if self._bucket is not None:
                return self._bucket
            if not self._settings.gcs_bucket:
                raise ConfigurationError("GCS_BUCKET is not set.", setting="GCS_BUCKET")
            key = self._key_credentials()
            project = self._google.project or (key.project_id if key else None)
            self._signer = key  # None: resolved from ADC when a URL is first signed
            if self._emulator:
                credentials: Credentials = AnonymousCredentials()
                options = {"api_endpoint": self._emulator}
            else:
                if key is None:
                    self._signer, adc_project = self._default_credentials()
                    project = project or adc_project
                credentials, options = self._signer, None
            os.environ.setdefault(*NO_BUCKET_PROBE)  # read at each call, so in time
            client = storage.Client(
                project=project,
                credentials=credentials,
                client_options=options,
                _http=_session(credentials),
            )
            self._bucket = client.bucket(self._settings.gcs_bucket)
            return self._bucket

    def _key_credentials(self) -> Credentials | None:
        text = self._google.service_account_json
        if not text:
            return None
        try:
            info = json.loads(text)
            return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except Exception:  # the exception text may quote the key: never show it
            raise ConfigurationError(
                "GOOGLE_SERVICE_ACCOUNT_JSON is not a valid service-account key; "
                "paste the whole JSON key file.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
            ) from None

    @staticmethod
    def _default_credentials() -> tuple[Credentials, str | None]:
        try:
            return google.auth.default(scopes=list(SCOPES))
        except auth_exceptions.DefaultCredentialsError as err:
            raise ConfigurationError(
                "No Google credentials found; set GOOGLE_SERVICE_ACCOUNT_JSON "
                "or run where Application Default Credentials exist.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
            ) from err

    def _signing_credentials(self) -> Credentials:
        if self._signer is not None:
            return self._signer
        with self._lock:  # emulator without a key: signing falls back to ADC
            if self._signer is None:
                self._signer, _ = self._default_credentials()
            return self._signer

    def _iam_identity(self, credentials: Credentials) -> tuple[str, str]:
        """A valid access token and the service-account email, for signing through IAM."""
        if not hasattr(credentials, "service_account_email"):  # e.g. gcloud user credentials
            raise ConfigurationError(_NEEDS_SERVICE_ACCOUNT, setting="GOOGLE_SERVICE_ACCOUNT_JSON")
        with self._token_lock:
            if not credentials.valid:
                if self._auth_request is None:
                    self._auth_request = Request(_session(None))
                try:
                    credentials.refresh(self._auth_request)
                except auth_exceptions.GoogleAuthError as err:
                    raise ConfigurationError(
                        f"Could not get a Google access token; check {CREDENTIALS_HINT}.",
                        setting="GOOGLE_SERVICE_ACCOUNT_JSON",
                    ) from err
            token = credentials.token
        email = getattr(credentials, "service_account_email", None)
        if not token or not email or "@" not in email:
            raise ConfigurationError(_NEEDS_SERVICE_ACCOUNT, setting="GOOGLE_SERVICE_ACCOUNT_JSON")
        return token, email

    # -- errors -----------------------------------------------------------------------------
    def _describe(self, err: BaseException, action: str) -> ImagineError:
        """One actionable sentence for an SDK error; never the SDK's own text."""
        if isinstance(err, api_exceptions.RetryError) and err.cause is not None:
            err = err.cause
        status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(status, int) and not isinstance(err, api_exceptions.GoogleAPICallError):
            err = api_exceptions.from_http_status(status, "")  # upload layer: InvalidResponse
        bucket = self._settings.gcs_bucket
        if isinstance(err, api_exceptions.NotFound):
            return ConfigurationError(
                f"Bucket {bucket} was not found; check GCS_BUCKET.", setting="GCS_BUCKET"
            )
        if isinstance(err, api_exceptions.Unauthorized | api_exceptions.Forbidden):
            return ConfigurationError(
                f"Google Cloud Storage refused access to bucket {bucket}; check GCS_BUCKET "
                f"and the permissions of {CREDENTIALS_HINT}.",
                setting="GCS_BUCKET",
            )
        if isinstance(err, auth_exceptions.GoogleAuthError):
            return ConfigurationError(
                f"Could not authenticate to Google Cloud Storage; check {CREDENTIALS_HINT}.",
                setting="GOOGLE_SERVICE_ACCOUNT_JSON",
            )
        if isinstance(err, api_exceptions.PreconditionFailed):
            return StoreError("An object with the new image's name already exists; try again.")
        if isinstance(err, api_exceptions.GoogleAPICallError):
            return StoreError(
                f"Google Cloud Storage failed to {action} (HTTP {err.code}); try again later."
            )
        if isinstance(err, requests.RequestException):
            where = "check STORAGE_EMULATOR_HOST" if self._emulator else "try again later"
            return StoreError(f"Could not reach Google Cloud Storage to {action}; {where}.")
        return StoreError(f"Could not {action} in Google Cloud Storage; try again later.")


def _session(credentials: Credentials | None) -> requests.Session:
    """A requests session with a connection pool big enough for many worker threads."""
    session = AuthorizedSession(credentials) if credentials is not None else requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

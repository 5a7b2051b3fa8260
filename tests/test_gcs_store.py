"""GcsImageStore against a real in-process GCS emulator (gcp-storage-emulator).

Every test goes through the real google-cloud-storage client over HTTP on 127.0.0.1. A thin
recording front (`GcsFront`) sits before the emulator so tests can see each request the
client sent (the `ifGenerationMatch=0` precondition, retries) and script failures; the emulator
itself checks neither signatures nor preconditions, so signatures are verified here with the
public key, exactly as GCS would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.config import Config
from bot.generation.stores.gcs import GcsImageStore
from bot.generation.types import ConfigurationError, StoreError
from tests.fakes._http import FakeServer, Reply
from tests.fakes.gcs import GcsFront, start_gcs_emulator
from tests.fakes.iam import FakeIamCredentials, FakeMetadataServer
from tests.fakes.images import png_bytes
from tests.fakes.service_account import ServiceAccount
from tests.fakes.tls import InterceptingProxy, TestCA

BUCKET = "imgs"
TTL = 900
NAME = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/([0-9a-f]{32})\.(png|jpg|webp)$")


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[object, str]]:
    server, url = start_gcs_emulator(BUCKET)
    try:
        yield server, url
    finally:
        server.stop()


@pytest.fixture
def emulator_url(emulator: tuple[object, str]) -> str:
    server, url = emulator
    server.wipe(keep_buckets=True)
    return url


@pytest.fixture(scope="module")
def shared_front(emulator: tuple[object, str]) -> Iterator[GcsFront]:
    with GcsFront(emulator[1]) as fake:  # stopping a fake takes ~0.5 s: share it
        yield fake


@pytest.fixture
def front(shared_front: GcsFront, emulator_url: str) -> GcsFront:
    shared_front.reset()
    return shared_front


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount()


StoreFactory = Callable[..., GcsImageStore]


@pytest.fixture
def make_store(front: GcsFront, account: ServiceAccount) -> StoreFactory:
    def build(**env: str) -> GcsImageStore:
        settings = {
            "GCS_BUCKET": BUCKET,
            "GCS_SIGNED_URL_TTL": str(TTL),
            "STORAGE_EMULATOR_HOST": front.url,
            "GOOGLE_CLOUD_PROJECT": account.project_id,
            "GOOGLE_SERVICE_ACCOUNT_JSON": account.json,
            "IMAGINE_RETRY_BACKOFF": "0.01",
            "IMAGINE_MAX_RETRIES": "2",
            "IMAGINE_MAX_RETRY_WAIT": "5",
            "IMAGINE_PROVIDER_TIMEOUT": "2",
        }
        settings.update(env)
        return GcsImageStore.from_config(Config.from_env(settings))

    return build


# -- helpers ----------------------------------------------------------------------------------
def object_name(url: str) -> str:
    path = unquote(urlsplit(url).path)
    assert path.startswith(f"/{BUCKET}/"), url
    return path[len(BUCKET) + 2 :]


def object_metadata(emulator_url: str, name: str) -> dict:
    answer = requests.get(f"{emulator_url}/storage/v1/b/{BUCKET}/o/{quote(name, safe='')}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def bucket_listing(emulator_url: str) -> list[str]:
    answer = requests.get(f"{emulator_url}/storage/v1/b/{BUCKET}/o")
    return sorted(item["name"] for item in answer.json().get("items") or [])


def today_utc() -> set[str]:
    """Today's date, and the neighbour if the test straddles midnight UTC."""
    now = datetime.now(UTC)
    return {(now + timedelta(seconds=s)).strftime("%Y/%m/%d") for s in (-5, 0, 5)}


def verify_v4_signature(url: str, verify: Callable[[bytes, bytes], None]) -> dict[str, str]:
    """Rebuild the V4 string-to-sign from the URL, as GCS does, and check its signature."""
    parts = urlsplit(url)
    canonical_query, _, signature = parts.query.partition("&X-Goog-Signature=")
    params = {k: v[0] for k, v in parse_qs(canonical_query).items()}
    assert params["X-Goog-SignedHeaders"] == "host"
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            params["X-Goog-Date"],
            scope,
            sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    verify(bytes.fromhex(signature), string_to_sign.encode())
    return params


# -- naming -----------------------------------------------------------------------------------
def test_names_are_dated_random_and_never_overwrite(
    make_store: StoreFactory, front: GcsFront, emulator_url: str
) -> None:
    store = make_store(GCS_PREFIX="/team/images/")
    image = png_bytes("same")
    first, second = store.put(image, "image/png"), store.put(image, "image/png")

    names = [object_name(first.url), object_name(second.url)]
    assert names[0] != names[1]
    for name in names:
        assert name.startswith("team/images/")
        match = NAME.match(name.removeprefix("team/images/"))
        assert match, name
        assert "/".join(match.groups()[:3]) in today_utc()
        assert match.group(5) == "png"
    assert bucket_listing(emulator_url) == sorted(names)
    for stored in (first, second):
        assert requests.get(stored.url).content == image

    uploads = front.calls("/upload/")
    assert len(uploads) == 2
    assert all(call.query.get("ifGenerationMatch") == "0" for call in uploads)


def test_extension_follows_the_mime_type(make_store: StoreFactory) -> None:
    store = make_store()
    jpeg = store.put(png_bytes("j", fmt="JPEG"), "image/jpeg")
    webp = store.put(png_bytes("w", fmt="WEBP"), "image/webp")
    assert object_name(jpeg.url).endswith(".jpg")
    assert object_name(webp.url).endswith(".webp")


# -- metadata ---------------------------------------------------------------------------------
def test_signed_mode_stores_content_type_and_private_cache_control(
    make_store: StoreFactory, emulator_url: str
) -> None:
    stored = make_store().put(png_bytes("meta", fmt="JPEG"), "image/jpeg")
    meta = object_metadata(emulator_url, object_name(stored.url))
    assert meta["contentType"] == "image/jpeg"
    assert meta["cacheControl"] == f"private, max-age={TTL}"


def test_public_mode_stores_immutable_public_cache_control(
    make_store: StoreFactory, emulator_url: str
) -> None:
    stored = make_store(GCS_URL_MODE="public").put(png_bytes("pub"), "image/png")
    meta = object_metadata(emulator_url, object_name(stored.url))
    assert meta["contentType"] == "image/png"
    assert meta["cacheControl"] == "public, max-age=31536000, immutable"


# -- URLs -------------------------------------------------------------------------------------
def test_signed_url_is_v4_signed_by_the_key_and_downloads_the_bytes(
    make_store: StoreFactory, front: GcsFront, account: ServiceAccount
) -> None:
    image = png_bytes("signed")
    before = datetime.now(UTC).replace(microsecond=0)
    stored = make_store().put(image, "image/png")

    assert stored.data == image and stored.mime_type == "image/png"
    assert stored.expires_in == TTL
    assert stored.url.startswith(f"{front.url}/{BUCKET}/")  # signed for the emulator's host
    params = verify_v4_signature(stored.url, lambda sig, msg: account.verify(sig, msg))
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert params["X-Goog-Expires"] == str(TTL)
    email, date, location, service, kind = params["X-Goog-Credential"].split("/")
    assert (email, location, service, kind) == (account.email, "auto", "storage", "goog4_request")
    signed_at = datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC) and date == params["X-Goog-Date"][:8]

    answer = requests.get(stored.url)
    assert answer.status_code == 200
    assert answer.content == image
    assert answer.headers["Content-Type"] == "image/png"


def test_a_tampered_signed_url_fails_verification(
    make_store: StoreFactory, account: ServiceAccount
) -> None:
    """Guards the verifier above: it must reject a URL whose expiry was edited."""
    stored = make_store().put(png_bytes("tamper"), "image/png")
    tampered = stored.url.replace(f"X-Goog-Expires={TTL}", "X-Goog-Expires=604800")
    with pytest.raises(Exception) as caught:
        verify_v4_signature(tampered, lambda sig, msg: account.verify(sig, msg))
    assert type(caught.value).__name__ == "InvalidSignature"


def test_public_url_points_at_the_object_and_downloads_the_bytes(
    make_store: StoreFactory, front: GcsFront
) -> None:
    image = png_bytes("public")
    stored = make_store(GCS_URL_MODE="public").put(image, "image/png")
    name = object_name(stored.url)
    assert stored.url == f"{front.url}/{BUCKET}/{name}"
    assert "X-Goog-" not in stored.url and stored.expires_in is None
    assert requests.get(stored.url).content == image


def test_emulator_host_without_scheme_is_used_directly(
    make_store: StoreFactory, emulator_url: str
) -> None:
    host = emulator_url.removeprefix("http://")
    image = png_bytes("direct")
    stored = make_store(STORAGE_EMULATOR_HOST=host).put(image, "image/png")
    assert stored.url.startswith(f"{emulator_url}/{BUCKET}/")
    assert requests.get(stored.url).content == image


def test_a_stored_image_is_named_by_reference_and_signed_afresh_from_it(
    make_store: StoreFactory, account: ServiceAccount
) -> None:
    image = png_bytes("renewed")
    store = make_store()
    stored = store.put(image, "image/png")
    assert stored.ref == f"gs://{BUCKET}/{object_name(stored.url)}"
    time.sleep(1.1)  # V4 signatures are dated to the second
    fresh = store.url_for(stored.ref)
    assert fresh != stored.url and urlsplit(fresh).path == urlsplit(stored.url).path
    params = verify_v4_signature(fresh, lambda sig, msg: account.verify(sig, msg))
    assert params["X-Goog-Date"] > parse_qs(urlsplit(stored.url).query)["X-Goog-Date"][0]
    assert requests.get(fresh).content == image
    # another store of the app (a new process) signs the same reference just as well
    assert requests.get(make_store().url_for(stored.ref)).content == image
    for foreign in ("https://example.com/a.png", "gs://", f"gs://{BUCKET}", "file:///tmp/a.png"):
        assert store.url_for(foreign) is None


def test_public_mode_makes_public_urls_from_references(make_store: StoreFactory) -> None:
    image = png_bytes("public ref")
    store = make_store(GCS_URL_MODE="public")
    stored = store.put(image, "image/png")
    assert store.url_for(stored.ref) == stored.url
    assert requests.get(stored.url).content == image


# -- concurrency ------------------------------------------------------------------------------
def test_twenty_concurrent_puts_all_land_under_distinct_names(
    make_store: StoreFactory, front: GcsFront, emulator_url: str
) -> None:
    store = make_store()
    images = [png_bytes(f"concurrent-{i}") for i in range(20)]
    start = threading.Barrier(20)

    def put(image: bytes):
        start.wait()
        return store.put(image, "image/png")

    with ThreadPoolExecutor(max_workers=20) as pool:
        stored = list(pool.map(put, images))

    names = [object_name(s.url) for s in stored]
    assert len(set(names)) == 20
    assert bucket_listing(emulator_url) == sorted(names)
    for image, item in zip(images, stored, strict=True):
        assert requests.get(item.url).content == image
    assert len(front.calls("/upload/")) == 20


# -- settings and check -----------------------------------------------------------------------
def test_missing_bucket_is_reported_and_refused(make_store: StoreFactory) -> None:
    assert make_store().missing_settings() == []
    store = make_store(GCS_BUCKET="")
    assert store.missing_settings() == ["GCS_BUCKET"]
    with pytest.raises(StoreError, match="GCS_BUCKET"):
        store.put(png_bytes(), "image/png")
    with pytest.raises(ConfigurationError, match="GCS_BUCKET") as caught:
        store.check()
    assert caught.value.setting == "GCS_BUCKET"


def test_check_lists_the_bucket_and_signs(
    make_store: StoreFactory, front: GcsFront, account: ServiceAccount
) -> None:
    assert make_store().check() == f"bucket {BUCKET} reachable; V4 URLs signed by {account.email}"
    assert front.calls(f"/b/{BUCKET}/o")
    public = make_store(GCS_URL_MODE="public").check()
    assert public.startswith(f"bucket {BUCKET} reachable; public URLs")


def test_the_store_asks_only_for_what_the_object_roles_grant(
    make_store: StoreFactory, front: GcsFront
) -> None:
    """google-cloud-storage 3.11+ fetches a bucket's metadata in the background on its first
    object call (for tracing we do not use); with the object roles the README asks for, that is
    a denied storage.buckets.get in the audit logs at every start. The store turns it off."""
    store = make_store()
    stored = store.put(png_bytes("roles"), "image/png")
    assert store.get(stored.ref) == stored.data
    store.check()
    assert store.delete(stored.ref)
    front.quiesce(idle=0.5)
    assert front.calls("/upload/") and front.calls(f"/b/{BUCKET}/o")
    bucket_itself = [r for r in front.requests if r.path.rstrip("/") == f"/storage/v1/b/{BUCKET}"]
    assert bucket_itself == []


def test_check_names_the_bucket_setting_when_the_bucket_is_missing(
    make_store: StoreFactory,
) -> None:
    with pytest.raises(ConfigurationError, match="GCS_BUCKET") as caught:
        make_store(GCS_BUCKET="no-such-bucket").check()
    assert "no-such-bucket" in str(caught.value)


# -- failures ---------------------------------------------------------------------------------
def gcs_error(status: int, reason: str) -> Reply:
    return Reply(status, {"error": {"code": status, "message": reason, "errors": []}})


def assert_no_secret(message: str, account: ServiceAccount) -> None:
    key_body = account.info["private_key"].splitlines()[1]
    for secret in (key_body, account.key_id, "PRIVATE KEY", "X-Goog-Signature"):
        assert secret not in message


def test_refused_upload_is_a_store_error_naming_settings_without_secrets(
    make_store: StoreFactory, front: GcsFront, account: ServiceAccount
) -> None:
    front.enqueue(gcs_error(403, "caller does not have storage.objects.create"), path_contains="/o")
    with pytest.raises(StoreError) as caught:
        make_store().put(png_bytes(), "image/png")
    message = str(caught.value)
    assert "GCS_BUCKET" in message and "GOOGLE_SERVICE_ACCOUNT_JSON" in message
    assert "storage.objects.create" not in message  # the SDK's text is not shown as is
    assert_no_secret(message, account)


def test_transient_upload_failures_are_retried(
    make_store: StoreFactory, front: GcsFront, emulator_url: str
) -> None:
    front.enqueue(gcs_error(503, "backend"), gcs_error(503, "backend"), path_contains="/upload/")
    stored = make_store().put(png_bytes("retry"), "image/png")
    assert len(front.calls("/upload/")) == 3
    assert bucket_listing(emulator_url) == [object_name(stored.url)]


def test_persistent_upload_failure_gives_up_with_a_short_store_error(
    make_store: StoreFactory, front: GcsFront, account: ServiceAccount
) -> None:
    front.enqueue(*[gcs_error(503, "backend")] * 200, path_contains="/upload/")
    started = time.monotonic()
    with pytest.raises(StoreError, match="HTTP 503") as caught:
        make_store(IMAGINE_PROVIDER_TIMEOUT="0.5").put(png_bytes(), "image/png")
    assert time.monotonic() - started < 5
    assert len(front.calls("/upload/")) >= 2
    assert_no_secret(str(caught.value), account)


def test_name_collision_is_reported_not_overwritten(
    make_store: StoreFactory, front: GcsFront
) -> None:
    front.enqueue(gcs_error(412, "conditionNotMet"), path_contains="/upload/")
    with pytest.raises(StoreError, match="already exists"):
        make_store().put(png_bytes(), "image/png")


def test_unreachable_emulator_names_storage_emulator_host(make_store: StoreFactory) -> None:
    with FakeServer() as gone:
        url = gone.url
    store = make_store(STORAGE_EMULATOR_HOST=url, IMAGINE_PROVIDER_TIMEOUT="0.3")
    with pytest.raises(StoreError, match="STORAGE_EMULATOR_HOST"):
        store.put(png_bytes(), "image/png")


def test_broken_key_names_the_setting_and_never_echoes_it(make_store: StoreFactory) -> None:
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw-not-really-a-key"
    broken = ServiceAccount().info | {
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"
    }
    store = make_store(GOOGLE_SERVICE_ACCOUNT_JSON=json.dumps(broken))
    with pytest.raises(StoreError, match="GOOGLE_SERVICE_ACCOUNT_JSON") as put_error:
        store.put(png_bytes(), "image/png")
    with pytest.raises(ConfigurationError, match="GOOGLE_SERVICE_ACCOUNT_JSON") as check_error:
        store.check()
    for caught in (put_error, check_error):
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value.args)


# -- keyless signing through IAM signBlob (Cloud Run / GCE) -----------------------------------
IAM_HOST = "iamcredentials.googleapis.com:443"
REPO = Path(__file__).resolve().parents[1]
KEYLESS_RUN = """
import json
from bot.config import Config
from bot.generation.stores.gcs import GcsImageStore
from bot.generation.types import ImagineError
from tests.fakes.images import png_bytes

store = GcsImageStore.from_config(Config.from_env())
report = {"check": store.check(), "stored": []}
for i in range(3):
    stored = store.put(png_bytes(f"keyless-{i}"), "image/png")
    report["stored"].append({"url": stored.url, "expires_in": stored.expires_in})
try:
    store.put(png_bytes("refused"), "image/png")
except ImagineError as err:
    report["error"] = {"type": type(err).__name__, "message": str(err)}
print(json.dumps(report))
"""


def test_keyless_credentials_sign_through_iam_signblob(
    tmp_path: Path, front: GcsFront, emulator_url: str
) -> None:
    """A real process on "GCE": ADC from the metadata server, signing via IAM over TLS.

    google-auth reads GCE_METADATA_HOST when first imported, so this runs in a child process
    with its own environment; nothing leaks into other tests.
    """
    signer = ServiceAccount(
        email="imagine-run@imagine-test.iam.gserviceaccount.com",
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    token = f"ya29.metadata-{uuid.uuid4().hex}"
    denied = {"error": {"code": 403, "message": f"signBlob denied for {token}"}}
    ca = TestCA(tmp_path)
    with (
        FakeMetadataServer(signer.email, token) as metadata,
        FakeIamCredentials(signer, token) as iam,
        InterceptingProxy(ca, {IAM_HOST: ("127.0.0.1", iam.port)}) as proxy,
    ):
        iam.enqueue(*[iam.answer] * 4, Reply(403, denied), path_contains=":signBlob")
        metadata_host = f"127.0.0.1:{metadata.port}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),  # no developer ADC file
            "PYTHONPATH": str(REPO),
            "GCE_METADATA_HOST": metadata_host,
            "GCE_METADATA_IP": metadata_host,
            "HTTPS_PROXY": proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(ca.bundle),
            "GCS_BUCKET": BUCKET,
            "GCS_SIGNED_URL_TTL": str(TTL),
            "STORAGE_EMULATOR_HOST": front.url,
        }
        done = subprocess.run(
            [sys.executable, "-c", KEYLESS_RUN],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["check"] == (
        f"bucket {BUCKET} reachable; V4 URLs signed through IAM signBlob as {signer.email}"
    )
    for i, stored in enumerate(report["stored"]):
        params = verify_v4_signature(stored["url"], lambda sig, msg: signer.verify(sig, msg))
        assert params["X-Goog-Credential"].startswith(f"{signer.email}/")
        assert params["X-Goog-Expires"] == str(TTL) and stored["expires_in"] == TTL
        assert requests.get(stored["url"]).content == png_bytes(f"keyless-{i}")

    assert len(iam.calls(":signBlob")) == 5  # check, three puts, the refused one
    assert all(p.startswith(b"GOOG4-RSA-SHA256\n") for p in iam.signed_payloads())
    assert len(metadata.token_calls()) == 1  # the token is fetched once and reused
    assert set(proxy.tunnels) == {IAM_HOST}  # no other https host was contacted

    error = report["error"]
    assert error["type"] == "StoreError"
    assert "roles/iam.serviceAccountTokenCreator" in error["message"]
    assert "GCS_URL_MODE=public" in error["message"]
    assert token not in error["message"]
    # signing comes first, so the refused image left no orphan object behind
    assert len(bucket_listing(emulator_url)) == 3


def test_public_mode_needs_no_signing_credentials(make_store: StoreFactory) -> None:
    image = png_bytes("anonymous")
    store = make_store(GCS_URL_MODE="public", GOOGLE_SERVICE_ACCOUNT_JSON="")
    assert requests.get(store.put(image, "image/png").url).content == image


def test_user_credentials_cannot_sign_and_say_what_to_set(
    make_store: StoreFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    emulator_url: str,
) -> None:
    """`gcloud auth application-default login` credentials have no service account to sign as."""
    secret = f"refresh-{uuid.uuid4().hex}"
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "imagine.apps.googleusercontent.com",
                "client_secret": f"client-{secret}",
                "refresh_token": secret,
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    store = make_store(GOOGLE_SERVICE_ACCOUNT_JSON="")
    with pytest.raises(StoreError, match="GOOGLE_SERVICE_ACCOUNT_JSON") as caught:
        store.put(png_bytes(), "image/png")
    assert "GCS_URL_MODE=public" in str(caught.value)
    assert secret not in str(caught.value)
    assert bucket_listing(emulator_url) == []  # nothing uploaded without a URL to give back

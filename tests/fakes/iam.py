"""Google identity endpoints for the keyless signing path (Cloud Run, GCE).

`FakeMetadataServer` speaks the GCE metadata protocol google-auth uses for Application Default
Credentials (`GCE_METADATA_HOST` / `GCE_METADATA_IP` point at it). `FakeIamCredentials` answers
IAM Credentials `signBlob`, signing with a real RSA key so the resulting signed URLs verify.
The storage library calls `https://iamcredentials.googleapis.com` itself, so the IAM fake is
reached through `tests.fakes.tls.InterceptingProxy`.
"""

from __future__ import annotations

import base64
import re

from tests.fakes._http import FakeServer, RecordedRequest, Reply
from tests.fakes.service_account import ServiceAccount

FLAVOR = {"Metadata-Flavor": "Google"}
SIGN_BLOB = re.compile(r"^/v1/projects/-/serviceAccounts/(?P<email>[^/:]+):signBlob$")


class FakeMetadataServer(FakeServer):
    """The instance metadata server: identity, access token, project and universe."""

    def __init__(self, email: str, token: str, project_id: str = "imagine-test") -> None:
        super().__init__()
        self.email, self.token, self.project_id = email, token, project_id

    def answer(self, request: RecordedRequest) -> Reply:
        if request.headers.get("metadata-flavor") != "Google":
            return Reply(403, "Missing Metadata-Flavor: Google header", FLAVOR)
        path = request.path.removeprefix("/computeMetadata/v1")
        accounts = (
            "/instance/service-accounts/default",
            f"/instance/service-accounts/{self.email}",
        )
        if request.path == "/":
            return Reply(200, "", FLAVOR)
        if path == "/project/project-id":
            return Reply(200, self.project_id, FLAVOR)
        if path == "/universe/universe-domain":
            return Reply(200, "googleapis.com", FLAVOR)
        if path.rstrip("/") in accounts:
            info = {"aliases": ["default"], "email": self.email, "scopes": [_SCOPE]}
            return Reply(200, info, FLAVOR)
        if path in {f"{account}/token" for account in accounts}:
            body = {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
            return Reply(200, body, FLAVOR)
        return Reply(404, "Not Found", FLAVOR)

    def token_calls(self) -> list[RecordedRequest]:
        return [r for r in self.calls("/token")]


_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class FakeIamCredentials(FakeServer):
    """`POST /v1/projects/-/serviceAccounts/{email}:signBlob` for one account and token."""

    def __init__(self, account: ServiceAccount, token: str) -> None:
        super().__init__()
        self.account, self.token = account, token

    def answer(self, request: RecordedRequest) -> Reply:
        match = SIGN_BLOB.match(request.path)
        if request.method != "POST" or not match:
            return Reply(404, _error(404, "NOT_FOUND", "Unknown method"))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, _error(401, "UNAUTHENTICATED", "Invalid access token"))
        if match["email"] != self.account.email:
            return Reply(403, _error(403, "PERMISSION_DENIED", "iam.serviceAccounts.signBlob"))
        payload = base64.b64decode(request.json()["payload"])
        signature = base64.b64encode(self.account.sign(payload)).decode()
        return Reply(200, {"keyId": self.account.key_id, "signedBlob": signature})

    def signed_payloads(self) -> list[bytes]:
        return [base64.b64decode(r.json()["payload"]) for r in self.calls(":signBlob")]


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}

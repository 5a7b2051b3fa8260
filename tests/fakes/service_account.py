"""Real service-account keys for tests: a fresh RSA key in the JSON shape Google issues.

google-auth signs JWTs and google-cloud-storage signs URLs with the key for real, so tests
can verify those signatures with the matching public key instead of trusting a stub.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@cache
def _shared_key() -> rsa.RSAPrivateKey:
    """Generating RSA keys is slow-ish; most tests can share one."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class ServiceAccount:
    """A service-account key: `info` is what GOOGLE_SERVICE_ACCOUNT_JSON holds."""

    email: str = "imagine-test@imagine-test.iam.gserviceaccount.com"
    project_id: str = "imagine-test"
    token_uri: str = "https://oauth2.googleapis.com/token"
    key: rsa.RSAPrivateKey = field(default_factory=_shared_key, repr=False)
    key_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def info(self) -> dict[str, Any]:
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": private_key_pem(self.key),
            "client_email": self.email,
            "client_id": "123456789012345678901",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    @property
    def json(self) -> str:
        return json.dumps(self.info)

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256, as Google signs blobs and JWTs."""
        return self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raises cryptography's InvalidSignature when the signature is not ours."""
        self.key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def service_account_info(**overrides: Any) -> dict[str, Any]:
    """Just the key dict, for tests that do not need to verify signatures."""
    return ServiceAccount(**overrides).info

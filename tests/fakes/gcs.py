"""Google Cloud Storage for tests: the `gcp-storage-emulator` package in process, behind a
recording front.

The emulator serves one request at a time and checks neither signatures nor preconditions;
`GcsFront` records what the real google-cloud-storage client sent, lets a test script
failures, and serialises forwarding so concurrency is absorbed by its own accept queue.

The emulator grants every permission; GCS grants a principal only its roles. The front
answers as GCS does for the roles the README asks for (the object roles, none on the bucket
itself): a bucket's own metadata (`storage.buckets.get`) is refused with 403.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

import requests
from gcp_storage_emulator.server import create_server

from tests.fakes._http import FakeServer, RecordedRequest, Reply

HOP_BY_HOP = {"host", "connection", "content-length", "transfer-encoding", "accept-encoding"}
PASSED_BACK = {"content-type", "content-range", "content-disposition", "location", "x-goog-hash"}
BUCKET_ITSELF = re.compile(r"^/storage/v1/b/[^/]+/?$")  # not its objects (/o), not /upload/


def start_gcs_emulator(bucket: str = "imgs"):
    """Start an in-memory emulator with `bucket`; returns (server, base URL). Call .stop()."""
    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    server.start()
    port = server._api._httpd.server_address[1]  # the emulator picks a free port for 0
    return server, f"http://127.0.0.1:{port}"


class GcsFront(FakeServer):
    """Records every request, answers scripted ones, forwards the rest to the emulator."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self._forward_lock = threading.Lock()
        self._session = requests.Session()

    def answer(self, request: RecordedRequest) -> Reply:
        if BUCKET_ITSELF.match(request.path):
            return bucket_denied(request.method)
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in request.query.items())
        url = f"{self.upstream}{quote(request.path, safe='/%')}" + (f"?{query}" if query else "")
        headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
        with self._forward_lock:
            answer = self._session.request(
                request.method, url, headers=headers, data=request.body, timeout=10
            )
        back = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_BACK}
        return Reply(answer.status_code, answer.content, back)


def bucket_denied(method: str) -> Reply:
    """GCS's answer to a principal without the bucket permission the call needs."""
    permission = "storage.buckets.get" if method == "GET" else "storage.buckets.update"
    message = (
        f"imagine@test.iam.gserviceaccount.com does not have {permission} access to the "
        f"Google Cloud Storage bucket. Permission '{permission}' denied on resource "
        "(or it may not exist)."
    )
    error = {"code": 403, "message": message, "errors": [{"reason": "forbidden"}]}
    return Reply(403, {"error": error})

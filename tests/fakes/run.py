"""Run a command against the local fakes: `python -m tests.fakes.run python -m bot check`.

Starts the fake Vertex AI, the fake Azure OpenAI and the GCS emulator on 127.0.0.1, sets the
variables that point the app at them (a fresh service-account key, an Azure key, a bucket),
runs the command, and stops everything. Without a command it prints the variables and serves
until Ctrl-C. This is how the README's examples are tried without any cloud account.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tests.fakes.gcs import GcsFront, start_gcs_emulator
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.vertex import FakeVertexAI, service_account_info

BUCKET = "imagine-demo"


@contextmanager
def fake_cloud() -> Iterator[dict[str, str]]:
    """Start the fakes; yield the environment variables that point the app at them."""
    server, emulator_url = start_gcs_emulator(BUCKET)
    try:
        with ExitStack() as stack:
            vertex = stack.enter_context(FakeVertexAI(project="demo-project"))
            openai = stack.enter_context(FakeOpenAIImages(deployments={"images": "gpt-image-2"}))
            gcs = stack.enter_context(GcsFront(emulator_url))
            key = service_account_info(vertex.url + "/token", project_id="demo-project")
            yield {
                "GOOGLE_CLOUD_PROJECT": "demo-project",
                "GOOGLE_SERVICE_ACCOUNT_JSON": json.dumps(key),
                "VERTEX_AI_BASE_URL": vertex.url,
                "AZURE_OPENAI_ENDPOINT": openai.url,
                "AZURE_OPENAI_API_KEY": openai.azure_api_key,
                "AZURE_OPENAI_IMAGE_DEPLOYMENT": "images",
                "OPENAI_IMAGE_MODEL": "gpt-image-2",
                "GCS_BUCKET": BUCKET,
                "STORAGE_EMULATOR_HOST": gcs.url,
            }
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    with fake_cloud() as env:
        if argv:
            return subprocess.run(argv, env={**os.environ, **env}).returncode
        for name, value in env.items():
            print(f"export {name}={shlex.quote(value)}")
        print("# fakes running; Ctrl-C stops them", file=sys.stderr)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every fake the app talks to, started together for the end-to-end tests: Slack, Vertex AI,
Azure OpenAI and Cloud Storage (the emulator, behind the front that checks signed URLs).

    with all_fakes() as fakes, AppProcess(fakes.env(DATABASE_URL=db)) as app:
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.fakes.gcs import GcsFront, start_gcs_emulator
from tests.fakes.openai_images import FakeOpenAIImages
from tests.fakes.slack import FakeSlack
from tests.fakes.vertex import FakeVertexAI, service_account_info
from tests.slack_harness import providers_env, slack_env

BUCKET = "imgs"


@dataclass
class Fakes:
    slack: FakeSlack
    vertex: FakeVertexAI
    openai: FakeOpenAIImages
    gcs: GcsFront
    emulator_url: str

    def env(self, **settings: str) -> dict[str, str]:
        """The app's settings for both providers and the bucket; `settings` add or override."""
        key = service_account_info(token_uri=self.vertex.url + "/token")
        base = {
            **providers_env(self.vertex, self.openai, key),
            "GCS_BUCKET": BUCKET,
            "STORAGE_EMULATOR_HOST": self.gcs.url,
        }
        return slack_env(self.slack, **{**base, **settings})


@contextmanager
def all_fakes() -> Iterator[Fakes]:
    server, emulator_url = start_gcs_emulator(BUCKET)
    try:
        with (
            FakeSlack() as slack,
            FakeVertexAI() as vertex,
            FakeOpenAIImages(deployments={"img": "gpt-image-2"}) as openai,
            GcsFront(emulator_url) as gcs,
        ):
            yield Fakes(slack, vertex, openai, gcs, emulator_url)
    finally:
        server.stop()

"""The baseline the load benchmark compares against: the plainest Bolt app that draws.

The shape of Bolt's samples: acknowledge, then do the work on a thread pool (raised to 256
threads, and Bolt's listener pool to 32), calling the openai SDK and uploading the picture
with `files_upload_v2`. No parsing, no validation, no history, no votes, no quotas, no
queue. It is served as Bolt's WSGI samples are, by gunicorn's threaded worker (gthread, 32
threads); the app runs gunicorn's asyncio worker instead (bot/web.py: a slow client must not
hold a thread), so the figures' differences are the app's own work and that choice.

    SLACK_BOT_TOKEN=... SLACK_SIGNING_SECRET=... SLACK_API_URL=... AZURE_OPENAI_ENDPOINT=...
    AZURE_OPENAI_API_KEY=... AZURE_OPENAI_IMAGE_DEPLOYMENT=... PORT=3000 python -m bench.baseline
"""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor

import openai
from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

jobs = ThreadPoolExecutor(256)
client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
images = openai.AzureOpenAI(
    azure_endpoint=os.environ["AZURE_OPENAI_ENDPOINT"],
    azure_deployment=os.environ["AZURE_OPENAI_IMAGE_DEPLOYMENT"],
    api_key=os.environ["AZURE_OPENAI_API_KEY"],
    api_version="2025-04-01-preview",
)
app = App(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    client=client,
    listener_executor=ThreadPoolExecutor(32),
)


def draw(command: dict) -> None:
    prompt = command["text"].split(" ", 1)[-1]
    answer = images.images.generate(prompt=prompt, size="1024x1024")
    client.files_upload_v2(
        channel=command["channel_id"],
        content=base64.b64decode(answer.data[0].b64_json),
        filename="picture.png",
        title=prompt,
        initial_comment=f"*{prompt}*",
    )


@app.command("/imagine")
def imagine(ack, command) -> None:
    ack("Drawing…")
    jobs.submit(draw, command)


handler = SlackRequestHandler(app)


def wsgi(environ, start_response):
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return handler(environ, start_response)


class Server(BaseApplication):
    def load_config(self) -> None:
        self.cfg.set("bind", f"127.0.0.1:{os.environ.get('PORT', '3000')}")
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", 32)
        self.cfg.set("backlog", 2048)

    def load(self):
        return wsgi


if __name__ == "__main__":
    Server().run()

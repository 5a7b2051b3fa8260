"""Previews reach Slack at most about once a second per picture, whatever the uploads cost.

The interval counts from each call to the front end, so a preview whose upload to the bucket
was slow does not bring the next update closer to it (`chat.update` is rate limited).
"""

from __future__ import annotations

from bot.core.jobs import GenerateJob
from bot.core.ports import Posted
from bot.core.previews import PreviewPosts
from bot.generation.types import GeneratedImage, ImageRequest, StoredImage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingFrontEnd:
    """The part of the Publisher port previews use: each call's time on the clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def preview(self, job, provider, model, stored, index, replace) -> Posted:
        self.calls.append(self.clock.now)
        return replace or Posted(ts="1700000000.000100")


def previews(clock: Clock, front: RecordingFrontEnd, upload_seconds: list[float]) -> PreviewPosts:
    def put(data: bytes, mime: str) -> StoredImage:
        clock.now += upload_seconds.pop(0)  # the bucket takes its time
        return StoredImage(url="https://storage.example/p.png", mime_type=mime)

    job = GenerateJob(
        key="k1",
        request_id="r1",
        team_id="T1",
        channel_id="C1",
        user_id="U1",
        providers=("dalle3",),
        request=ImageRequest(prompt="a lighthouse"),
    )
    return PreviewPosts(job, front, lambda: True, put, {"dalle3": "gpt-image-2"}, clock=clock)


def preview(index: int) -> GeneratedImage:
    return GeneratedImage(data=b"png", mime_type="image/png")


def test_a_slow_upload_does_not_bring_the_next_update_closer():
    clock = Clock()
    front = RecordingFrontEnd(clock)
    posts = previews(clock, front, upload_seconds=[0.5, 0.05, 0.05])
    posts.show("dalle3", preview(1), 1)  # arrives at 100.0, posted at 100.5
    clock.now = 101.0  # the next preview arrives a second after the first
    posts.show("dalle3", preview(2), 2)  # 0.5 s after the post: too soon, skipped
    clock.now = 101.45
    posts.show("dalle3", preview(3), 3)  # 0.95 s after the post: shown
    assert front.calls == [100.5, 101.5]

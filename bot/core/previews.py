"""A job's previews: the first one posted as soon as it arrives, the later ones replacing it in
place, at most one post or update a second per picture (Slack's `chat.update` is Tier 3).

A preview is a post, so the delivery ledger is claimed before the first one: a second run of
the job (a queue redelivery) that finds the claim shows no preview and posts no picture.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.core.jobs import GenerateJob
from bot.core.ports import Posted, Publisher
from bot.generation.types import GeneratedImage, StoredImage

log = logging.getLogger("imagine.jobs")

# seconds between the starts of two posts or updates of one picture's message: "about one a
# second", with room for a provider whose previews come exactly a second apart
MIN_INTERVAL = 0.9


@dataclass
class _Shown:
    posted: Posted
    at: float  # monotonic time the last post or update was sent to the front end


class PreviewPosts:
    """The preview sink for one job (`show`), and what it posted, for the finished picture to
    replace (`replacing`) or for a failure to withdraw (`withdraw`)."""

    def __init__(
        self,
        job: GenerateJob,
        publisher: Publisher,
        claim: Callable[[], bool],
        put: Callable[[bytes, str], StoredImage],
        models: dict[str, str],
        *,
        interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.publisher = publisher
        self.interval = interval
        self.claimed = False  # this run holds the delivery claim
        self._claim = claim
        self._put = put
        self._models = models
        self._clock = clock
        self._refused = False  # another run holds the claim, or the bot cannot post here
        self._shown: dict[str, _Shown] = {}
        self._lock = threading.Lock()

    def show(self, provider: str, image: GeneratedImage, index: int) -> None:
        """The sink the provider calls with each preview; never raises."""
        with self._lock:
            shown = self._shown.get(provider)
            if self._refused or image.data is None:
                return
            began = self._clock()
            if shown is not None and began - shown.at < self.interval:
                return  # too soon after the last one: the next preview or the picture follows
            if not self.claimed:
                if not self._claim():
                    self._refused = True  # an earlier run of this job posts, or has posted
                    return
                self.claimed = True
            try:
                stored = self._put(image.data, image.mime_type)
                if not stored.url:
                    return  # the store failed: the finished picture is posted as usual
                # the interval runs from this call to Slack, not from the preview's arrival:
                # a slow upload of this one must not bring the next call closer to it
                began = self._clock()
                posted = self.publisher.preview(
                    self.job,
                    provider,
                    self._models.get(provider, ""),
                    stored,
                    index,
                    shown.posted if shown else None,
                )
            except Exception as err:
                log.warning(
                    "preview not shown request_id=%s: %s", self.job.request_id, err, exc_info=True
                )
                return
            if posted.private or posted.ts is None:
                self._refused = True  # shown only to the requester, or nowhere: no more
                return
            self._shown[provider] = _Shown(posted, began)

    def replacing(self, provider: str) -> Posted | None:
        """The preview the finished picture replaces, once the interval since its last update
        has passed (at most about a second's wait); None when there is none."""
        with self._lock:
            shown = self._shown.pop(provider, None)
        if shown is None:
            return None
        wait = self.interval - (self._clock() - shown.at)
        if wait > 0:
            time.sleep(wait)
        return shown.posted

    def withdraw(self, provider: str | None = None) -> None:
        """Take down the previews of pictures that will not be finished (all, by default)."""
        with self._lock:
            names = [provider] if provider else list(self._shown)
            withdrawn = [self._shown.pop(name) for name in names if name in self._shown]
            self._refused = True
        for shown in withdrawn:
            self.publisher.withdraw_preview(self.job, shown.posted)

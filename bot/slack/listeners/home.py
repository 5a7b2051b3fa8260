"""App Home: `app_home_opened` -> `views.publish` of the person's tab; its model menu saves
their own default for a plain `/imagine <prompt>` (see `bot.core.choice`).

The tab is built after the event is acknowledged (Bolt acknowledges events first). Links to
pictures in the bucket are signed afresh from the object's name on every publish (the history
keeps no signed URL); an uploaded picture links to its message, or to its file.
"""

from __future__ import annotations

import logging
import threading

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import VotingConfig
from bot.core.choice import AUTO, COMPARE, ProviderChoice
from bot.generation.service import GenerationService
from bot.slack import messages
from bot.slack.messages import DEFAULT_MODEL_ACTION, HomePicture
from bot.votes.chart import ratings_chart
from bot.votes.db import Picture, VoteStore
from bot.votes.leaderboard import Leaderboard, LeaderboardResult
from bot.votes.schema import object_ref

log = logging.getLogger("imagine.slack")

RECENT = 10


class AppHome:
    def __init__(
        self,
        store: VoteStore,
        choice: ProviderChoice,
        service: GenerationService,
        voting: VotingConfig,
    ) -> None:
        self.store = store
        self.choice = choice
        self.service = service
        self.voting = voting
        self.leaderboard = Leaderboard(store)
        self._chart_lock = threading.Lock()
        self._chart: tuple[tuple, str] | None = None  # (the ratings drawn, the object's name)

    def register(self, app: App) -> None:
        app.event("app_home_opened")(self.on_opened)
        app.action(DEFAULT_MODEL_ACTION)(self.on_default_chosen)

    def choices(self) -> list[str]:
        """What the menu offers: the configured providers, compare and auto when two are."""
        configured = self.service.configured_providers()
        return [*configured, COMPARE, AUTO] if len(configured) > 1 else configured

    def on_opened(self, event: dict, client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            self.publish(event["user"], client)

    def on_default_chosen(self, ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        value = (action.get("selected_option") or {}).get("value")
        if value not in self.choices():
            log.warning("ignored an unknown default %r from %s", value, user)
        else:
            try:
                self.store.set_preference(user, value)
            except Exception:
                log.exception("could not save the default of %s", user)
        self.publish(user, client)  # shows what is saved now, whatever happened

    def publish(self, user: str, client: WebClient) -> None:
        own = self.choice.own_default(user)
        view = messages.home_view(
            self.pictures(user, client),
            *self._leaderboard(),
            choices=self.choices(),
            own=own,
            team_default=self.choice.default_name(),
            min_votes=self.voting.leaderboard_min_votes,
        )
        try:
            client.views_publish(user_id=user, view=view)
        except SlackApiError as err:
            log.error("views.publish failed for %s: %s", user, err.response.get("error"))

    # -- the parts -------------------------------------------------------------------------
    def pictures(self, user: str, client: WebClient) -> list[HomePicture] | None:
        try:
            recent = self.store.recent_pictures(user, RECENT)
        except Exception:
            log.exception("could not read the history of %s", user)
            return None
        return [
            HomePicture(
                prompt=p.prompt,
                provider=p.provider,
                model=p.model,
                epoch=int(p.created_at.timestamp()),
                link=self.link(p, client),
            )
            for p in recent
        ]

    def link(self, picture: Picture, client: WebClient) -> str | None:
        """A fresh link: the bucket's object signed now, else the message, else the file."""
        try:
            for url in picture.image_urls:
                fresh = self.service.link(object_ref(url)) if self.service.store else None
                if fresh:
                    return fresh
            if picture.message_ts:
                found = client.chat_getPermalink(
                    channel=picture.channel_id, message_ts=picture.message_ts
                )
                return found.get("permalink")
            if picture.file_id:
                return (client.files_info(file=picture.file_id).get("file") or {}).get("permalink")
        except Exception as err:  # one picture without a link, not a tab without pictures
            log.warning("no link for a picture of %s: %s", picture.channel_id, type(err).__name__)
        return None

    def _leaderboard(self) -> tuple[LeaderboardResult | None, str | None]:
        try:
            result = self.leaderboard.compute(min_votes=self.voting.leaderboard_min_votes)
        except Exception:
            log.exception("could not compute the leaderboard for App Home")
            return None, None
        if not result.rows or self.service.store is None:
            return result, None
        try:
            return result, self._chart_url(result)
        except Exception as err:
            log.warning("no chart for App Home: %s", type(err).__name__)
            return result, None

    def _chart_url(self, result: LeaderboardResult) -> str | None:
        """The chart in the bucket, drawn again only when the ratings changed; signed afresh."""
        drawn = tuple(
            (r.model, round(r.rating), round(r.ci_low), round(r.ci_high)) for r in result.rows
        )
        with self._chart_lock:
            kept = self._chart
        if kept is None or kept[0] != drawn:
            stored = self.service.put(ratings_chart(result.rows, title="Leaderboard"), "image/png")
            if stored.ref is None:
                return stored.url
            kept = (drawn, stored.ref)
            with self._chart_lock:
                self._chart = kept
        return self.service.link(kept[1])

"""Is the bot in this channel? Join public channels before posting there.

With `chat:write.public` Slack lets the bot post in a public channel it has not joined, but it
sends the bot events (the reactions that are votes) only from conversations it is a member of.
So before posting, the bot asks `conversations.info` (scope `channels:read`) and, in a public
channel it is not in, joins (`conversations.join`, scope `channels:join`). Private channels
and DMs cannot be joined: someone must invite the bot. Answers are remembered per channel for
a while, so a busy channel costs one call every few minutes, and an /invite or a removal is
noticed soon after. While one thread asks about a channel, the others posting there wait for
its answer: a burst of pictures in a new channel (or just after the answer expired) costs one
call, not one per picture against Slack's rate limit for `conversations.info`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("imagine.slack")

MEMBER_TTL = 600.0  # seconds a channel's answer is trusted
NOT_MEMBER_TTL = 60.0  # shorter: an invitation should take effect soon
# conversations.info's scopes for private conversations, which the app does not ask for
PRIVATE_READ = {"groups:read", "im:read", "mpim:read"}
ASK_WAIT = 60.0  # seconds a thread waits for another's answer (the client's timeouts end it)


class Membership:
    """Per-process memory of the channels the bot is in; safe to call from many threads.
    `Membership.of(client)` is the client's one memory, shared by whoever posts with it."""

    _shared: weakref.WeakKeyDictionary[WebClient, Membership] = weakref.WeakKeyDictionary()
    _shared_lock = threading.Lock()

    @classmethod
    def of(cls, client: WebClient) -> Membership:
        with cls._shared_lock:
            found = cls._shared.get(client)
            if found is None:
                found = cls._shared[client] = cls(client)
            return found

    def __init__(self, client: WebClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[bool | None, float]] = {}  # channel -> (answer, until)
        self._asking: dict[str, threading.Event] = {}  # channel -> set when its answer is in

    def ensure(self, channel: str) -> bool | None:
        """True: the bot is in the channel (it joined if it had to). False: it is not and
        cannot join (a private channel or DM it was not invited to, or joining was refused):
        reactions there never reach it. None: Slack did not say; the post decides.

        A DM (an id starting with D) is not asked about: the bot's own DM with a person it is
        in, any other it cannot join, and conversations.info would need `im:read`, a scope
        the app does not ask for (every DM's first picture logged the refusal)."""
        if channel.startswith("D"):
            return None
        with self._lock:
            known = self._known.get(channel)
            if known is not None and known[1] > self._clock():
                return known[0]
            answered = self._asking.get(channel)
            if answered is None:
                answered = self._asking[channel] = threading.Event()
                asking = True
            else:
                asking = False
        if not asking:  # another thread is asking Slack about this channel right now
            answered.wait(ASK_WAIT)
            with self._lock:
                known = self._known.get(channel)
            return known[0] if known is not None else None
        try:
            return self._remember(channel, self._check(channel))
        finally:
            with self._lock:
                del self._asking[channel]
            answered.set()

    def join(self, channel: str) -> bool:
        """Join now: Slack said `not_in_channel`, so the bot was removed since it looked."""
        return self._remember(channel, self._join(channel)) is True

    def _remember(self, channel: str, member: bool | None) -> bool | None:
        ttl = NOT_MEMBER_TTL if member is False else MEMBER_TTL
        with self._lock:
            self._known[channel] = (member, self._clock() + ttl)
        return member

    def _check(self, channel: str) -> bool | None:
        try:
            info = self.client.conversations_info(channel=channel).get("channel") or {}
        except SlackApiError as err:
            error = err.response.get("error")
            if error == "channel_not_found":
                return False  # a private channel or DM the bot was not invited to
            if error == "missing_scope" and err.response.get("needed") in PRIVATE_READ:
                return None  # not asked for, and would not help: only an invitation lets it in
            log.warning("conversations.info failed (%s): posting without joining", error)
            return None
        except Exception as err:  # unreachable: the post will tell
            log.warning(
                "conversations.info failed (%s): posting without joining", type(err).__name__
            )
            return None
        if info.get("is_member"):
            return True
        if info.get("is_private") or info.get("is_im") or info.get("is_mpim"):
            return None  # only an invitation lets the bot in; if it is in, the post works
        return self._join(channel)

    def _join(self, channel: str) -> bool | None:
        try:
            self.client.conversations_join(channel=channel)
        except SlackApiError as err:
            log.warning(
                "could not join channel %s (%s): votes there will not reach the bot",
                channel,
                err.response.get("error"),
            )
            return False
        except Exception as err:
            log.warning("could not join channel %s (%s)", channel, type(err).__name__)
            return None
        log.info("joined channel %s, so that its votes reach the bot", channel)
        return True

"""Putting messages and files in a channel, whatever the bot's membership.

Before posting, the bot joins a public channel it is not in (`Membership`): `chat:write.public`
would let it post without joining, but Slack sends it the votes (reactions) only from channels
it is a member of. Slack answers `not_in_channel` when the bot was removed since (we join again
and retry) and `channel_not_found` in private channels and DMs the bot is not in: only an
invitation helps, so the caller tells the person.

chat.postMessage has no idempotency key, and Slack's 5xx may come after it posted (its edge
gave up waiting), as may a lost connection or a timeout. A post that must appear once carries
a tag in its metadata; after such a failure the bot reads the conversation for the tag before
it posts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.generation.stores.base import extension_for
from bot.generation.types import PictureGoneError
from bot.slack import messages
from bot.slack.membership import Membership
from bot.slack.retry import SERVER_ERRORS, SlackWebClient, no_blind_retries

log = logging.getLogger("imagine.slack")

FILE_HOSTS = {"files.slack.com"}  # where url_private points; the bot token goes nowhere else
MAX_DOWNLOAD = 100 * 1024 * 1024  # larger than any provider takes, even before downscaling
GONE = PictureGoneError("That picture is no longer in Slack (deleted, or I cannot read it).")
CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}
# files.completeUploadExternal refusing a message's blocks: `invalid_blocks`, or
# `internal_error` (what Slack answers for a block type it takes in chat.postMessage only)
BLOCKS_REFUSED = {"invalid_blocks", "internal_error"}
POST_EVENT = "imagine_post"  # the metadata event_type of a post tagged to be made once
CLOCK_MARGIN = 300.0  # seconds Slack's clock may be behind ours, when reading back a post


def once_tag(*parts: str) -> str:
    """The tag that makes a post appear once (`Delivery.post_message`), named by `parts`: a
    hash, since the message's metadata is readable by anyone's app in the channel."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


class NotInChannelError(Exception):
    """The bot cannot post in this conversation until someone invites it."""


class FileGone(Exception):
    """Slack will not tell where a file is (deleted, or files:read is missing)."""


@dataclass(frozen=True)
class Upload:
    data: bytes
    mime_type: str
    title: str
    alt_text: str


@dataclass(frozen=True)
class Uploaded:
    file_ids: list[str]
    with_blocks: bool  # shared in a message of the blocks asked for (else with the comment)


class Delivery:
    def __init__(self, client: SlackWebClient, share_wait: float = 5.0) -> None:
        self.client = client
        self.share_wait = share_wait
        self.membership = Membership.of(client)  # one memory per client, however many posters

    def post_message(
        self, channel: str, message: dict[str, Any], *, once: str | None = None, **extra: Any
    ) -> str:
        """chat.postMessage, the bot in the channel first; returns the message ts.

        `once`: a tag (no secret: others may read it) that makes the post appear once even if
        Slack fails it after posting; the conversation's history scope is then needed to tell
        (without, such a post may appear twice, as it would untagged)."""
        self.membership.ensure(channel)
        if once is not None:
            return self._post_once(channel, message, once, extra)
        response = self._with_join(
            channel,
            lambda: self.client.chat_postMessage(
                channel=channel, unfurl_links=False, unfurl_media=False, **message, **extra
            ),
        )
        return response["ts"]

    def _post_once(
        self, channel: str, message: dict[str, Any], once: str, extra: dict[str, Any]
    ) -> str:
        """The tagged post: a 5xx or a lost connection is not retried blindly; after the
        client's backoff, the conversation is read, and the post made again only if the tag
        is not there."""
        metadata = {"event_type": POST_EVENT, "event_payload": {"once": once}}
        started, attempt = time.time(), 0
        while True:
            try:
                with no_blind_retries():
                    response = self._with_join(
                        channel,
                        lambda: self.client.chat_postMessage(
                            channel=channel,
                            unfurl_links=False,
                            unfurl_media=False,
                            metadata=metadata,
                            **message,
                            **extra,
                        ),
                    )
                return response["ts"]
            except (SlackApiError, OSError) as err:
                # an OSError: lost, timed out, unreachable; like a 5xx, it may have gone through
                lost = isinstance(err, OSError)
                if not lost and err.response.status_code not in SERVER_ERRORS:
                    raise
                wait = self.client.retries.backoff_wait(attempt, started)
                if wait is None:
                    raise
                if lost:
                    log.warning("Slack's answer to a post was lost (%s)", type(err).__name__)
            time.sleep(wait)
            attempt += 1
            ts = self._tagged(channel, once, started - CLOCK_MARGIN, extra.get("thread_ts"))
            if ts is not None:
                log.warning("Slack failed a post that had gone through: it is posted")
                return ts

    def _tagged(
        self, channel: str, once: str, since: float, thread_ts: str | None = None
    ) -> str | None:
        """The ts of the message tagged `once` posted after `since` (epoch seconds) in the
        channel or the thread; None when it is not there, or Slack will not say."""
        read = dict(channel=channel, oldest=f"{since:.6f}", include_all_metadata=True, limit=200)
        try:
            if thread_ts:
                pages = self.client.conversations_replies(ts=thread_ts, **read)
            else:
                pages = self.client.conversations_history(**read)
            for page in pages:  # the cursor's pages, read as they are needed
                for found in page.get("messages") or []:
                    metadata = found.get("metadata") or {}
                    payload = metadata.get("event_payload") or {}
                    if metadata.get("event_type") == POST_EVENT and payload.get("once") == once:
                        return found["ts"]
        except SlackApiError as err:
            log.warning("could not read whether a post went through: %s", err.response.get("error"))
        except OSError as err:
            log.warning("could not read whether a post went through: %s", type(err).__name__)
        return None

    def upload(self, channel: str, files: list[Upload], comment: str) -> str | None:
        """Upload images into the channel with `comment`; returns the message ts if Slack
        tells us within `share_wait` seconds (it shares files asynchronously), else None:
        the pictures are posted either way, only voting on them needs the ts."""
        file_ids = self.upload_files(channel, files, comment).file_ids
        return self._share_ts(file_ids[0], channel) if file_ids else None

    def download(self, file_id: str) -> bytes:
        """A file's bytes, read from its `url_private` with the bot token (scope files:read);
        PictureGoneError when it is deleted, unreadable or not an image."""
        try:
            info = self.client.files_info(file=file_id).get("file") or {}
        except SlackApiError:
            raise GONE from None
        url = info.get("url_private_download") or info.get("url_private") or ""
        if not self._slack_file_url(url):
            raise GONE
        try:
            with requests.get(
                url,
                headers={"Authorization": f"Bearer {self.client.token}"},
                timeout=self.client.timeout,
                stream=True,
                allow_redirects=False,  # Slack redirects an unauthorised read to its login page
            ) as response:
                kind = response.headers.get("Content-Type", "")
                if response.status_code != 200 or not kind.startswith("image/"):
                    raise GONE
                data = response.raw.read(MAX_DOWNLOAD + 1, decode_content=True)
        except requests.RequestException:
            raise GONE from None
        if len(data) > MAX_DOWNLOAD:
            raise PictureGoneError("That picture is too large for me to read.")
        return data

    def _slack_file_url(self, url: str) -> bool:
        """Slack's file host over https, or the host the Web API is reached at (a proxy, the
        tests): the only places the bot token may go."""
        parts, api = urlsplit(url), urlsplit(self.client.base_url)
        if parts.scheme == "https" and parts.hostname in FILE_HOSTS:
            return True
        return (parts.scheme, parts.netloc) == (api.scheme, api.netloc)

    def upload_files(
        self,
        channel: str,
        files: list[Upload],
        comment: str,
        thread_ts: str | None = None,
        blocks: Callable[[list[str]], list[dict[str, Any]]] | None = None,
    ) -> Uploaded:
        """Upload images and share them in the channel in one message: the blocks that
        `blocks(file_ids)` builds (buttons that name their files), else, or when Slack refuses
        those, `comment`. Which message the files became is `shared_ts`'s to find, when
        someone needs it.

        The three steps of `files_upload_v2`, run here so that the ids are known before the
        files are shared."""
        self.membership.ensure(channel)
        file_ids = [self._send(upload, f"imagine-{i}") for i, upload in enumerate(files, 1)]
        listed = [
            {"id": file_id, "title": messages.upload_title(upload.title)}
            for file_id, upload in zip(file_ids, files, strict=True)
        ]

        def share(**content: str) -> None:
            try:
                self._with_join(
                    channel,
                    lambda: self.client.files_completeUploadExternal(
                        files=listed,
                        channel_id=channel,
                        **({"thread_ts": thread_ts} if thread_ts else {}),
                        **content,
                    ),
                )
            except SlackApiError as err:
                # An upload is completed once only: after a 5xx whose call went through
                # (Slack's edge gave up waiting), the retry is refused. The files shared in
                # the channel say that it was posted.
                refused = err.response.get("error") in BLOCKS_REFUSED
                if refused or not file_ids or not self._share_ts(file_ids[0], channel):
                    raise
                log.warning("Slack refused a share that had gone through: it is posted")

        if blocks is not None:
            try:
                share(blocks=json.dumps(blocks(file_ids)))
                return Uploaded(file_ids, with_blocks=True)
            except SlackApiError as err:
                error = err.response.get("error")
                if error not in BLOCKS_REFUSED:
                    raise
                log.warning("Slack refused an upload's blocks (%s): sharing it plainly", error)
        share(initial_comment=comment)
        return Uploaded(file_ids, with_blocks=False)

    def _send(self, upload: Upload, name: str) -> str:
        """Steps 1 and 2 of an upload: a file id, and the bytes sent where Slack said."""
        answer = self.client.files_getUploadURLExternal(
            filename=f"{name}.{extension_for(upload.mime_type)}",
            length=len(upload.data),
            alt_txt=messages.upload_alt_text(upload.alt_text),
        )
        self.client.upload_bytes(answer["upload_url"], upload.data)
        return answer["file_id"]

    def _share_ts(self, file_id: str, channel: str) -> str | None:
        deadline = time.monotonic() + self.share_wait
        delay = 0.1
        while True:
            try:
                ts = shared_ts(self.client, file_id, channel)
            except FileGone:  # e.g. missing_scope on an old install: the post stands
                return None
            if ts is not None or time.monotonic() + delay > deadline:
                return ts
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _with_join(self, channel: str, call):
        try:
            return call()
        except SlackApiError as err:
            error = err.response.get("error")
            if error not in CANNOT_POST:
                raise
        if error == "not_in_channel" and self.membership.join(channel):
            return call()  # the bot was removed since it last looked: it joined again
        raise NotInChannelError(channel)


def shared_ts(client: WebClient, file_id: str, channel: str) -> str | None:
    """The ts of the message `file_id` became in `channel`; None while it is not shared.

    Raises FileGone when Slack will not say (a deleted file, an install without
    files:read): asking again would not help."""
    try:
        info = client.files_info(file=file_id).get("file") or {}
    except SlackApiError as err:
        raise FileGone(err.response.get("error", "")) from None
    for scope in ("public", "private"):
        shares = (info.get("shares") or {}).get(scope, {}).get(channel)
        if shares:
            return shares[0]["ts"]
    return None

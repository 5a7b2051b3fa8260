"""Previews: pictures a provider shows while it is still drawing (gpt-image's partial images).

Whoever wants them (the workflows, for a front end that can replace a post in place) sets
`current_previews` around the generation; a provider that can stream asks for previews only
when it is set, and hands each one over as it arrives. A context variable, like the pacer's
turn, so that the job stays plain data and the provider knows nothing of who shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from bot.generation.types import GeneratedImage

# (provider name, the preview, its 0-based index); must not raise, must return quickly enough
# not to hold up the stream (it runs on the provider's thread, between events)
PreviewSink = Callable[[str, GeneratedImage, int], None]

current_previews: ContextVar[PreviewSink | None] = ContextVar("current_previews", default=None)

"""Socket Mode's front end: Bolt's handler, answering envelopes as the HTTP front end answers
requests (bot/web.py).

- A slash command goes to the commands-only app (`build_app(commands_only=True)`): its
  listener runs on the envelope's own thread and the answer goes out when it returns. Bolt's
  default hands it to the listener pool and looks every 10 ms whether it acknowledged, so a
  command waited for that look, and for a free listener thread when votes or clicks held them.
- Every envelope is answered inside the acknowledgement gate (bot/core/acknowledging.py): a
  job accepted while envelopes are being answered starts once they are (or after the hold),
  and on the queue the workers are woken once for a burst.

The envelope is run and answered by Bolt's own Socket Mode helpers, as its handlers do.
"""

from __future__ import annotations

import time

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.core.acknowledging import AcknowledgementsFirst

SLASH_COMMANDS = "slash_commands"  # the envelope type of a slash command


class SocketModeFrontEnd(SocketModeHandler):
    def __init__(
        self, app: App, commands: App, app_token: str, gate: AcknowledgementsFirst
    ) -> None:
        super().__init__(app, app_token)
        self.commands = commands
        self.gate = gate

    def handle(self, client, req: SocketModeRequest) -> None:
        with self.gate.acknowledging():  # our jobs start once the answer is sent
            if req.type != SLASH_COMMANDS:
                super().handle(client, req)
                return
            started = time.time()
            send_response(client, req, run_bolt_app(self.commands, req), started)

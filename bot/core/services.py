"""What one process runs on: the services `bot.wiring` builds, handed to the front ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.config import Config
from bot.core.choice import ProviderChoice
from bot.core.runner import JobBoard, Runner
from bot.core.workflows import Workflows
from bot.generation.service import GenerationService
from bot.votes.db import VoteStore


@dataclass
class Services:
    config: Config
    service: GenerationService
    store: VoteStore
    choice: ProviderChoice
    board: JobBoard
    workflows: Workflows | None = None  # None in a web process that only enqueues
    runner: Runner | None = None  # None in a worker and on the command line
    queue_worker: Any = None  # bot.core.queue.QueueWorker in a worker process

    def close(self) -> None:
        """At a stop, after the jobs: write what is queued, release connections."""
        if self.workflows is not None:
            self.workflows.close()
        self.service.pacer.close()
        self.store.close()

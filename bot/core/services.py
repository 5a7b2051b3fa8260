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

    def after_fork(self) -> None:
        """In a process forked after these were built (gunicorn's workers): connections the
        parent opened must not be used by two processes at once. The database's are dropped
        here, without closing the parent's (SQLAlchemy's advice for forked processes); Redis
        clients notice the new process id and reconnect by themselves; thread pools start
        their threads on first use, after the fork."""
        self.store.engine.dispose(close=False)

    def close(self) -> None:
        """At a stop, after the jobs: write what is queued, release connections."""
        if self.workflows is not None:
            self.workflows.close()
        self.board.flush()
        self.service.pacer.close()
        self.store.close()

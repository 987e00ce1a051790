"""Job events in this process: one job's (`job:<id>`) or all of an owner's jobs' (`jobs:mine`)."""

from __future__ import annotations

import json
import logging
from collections import deque
from datetime import datetime, timedelta
from typing import Any, Self

from django.conf import settings
from django.utils import timezone

from jobs.frames import job_update_frame
from jobs.selectors import OUTPUT_PAGE_MAX, job_output, job_states, job_states_changed_since
from realtime.kernel import events, metrics
from realtime.kernel.names import JOB_LOG, JOB_OUTPUT, JOB_SHARE_ENDED, JOB_UPDATE, job_channel

from .database import on_database_thread
from .feed import CHECK, Feed
from .subscription import Subscription, deliver

logger = logging.getLogger(__name__)

read_job_states = on_database_thread(job_states)
read_job_states_changed_since = on_database_thread(job_states_changed_since)
read_job_output = on_database_thread(job_output)

FINAL = frozenset(("succeeded", "failed", "cancelled"))


class JobFeed(Feed[Subscription]):
    """Job events in this process: each update once and never older than one already sent.

    An update carries the job's whole state, so a missed one is superseded by the next; log
    lines a client already has (counted in its snapshot) are not sent again. After an outage of
    the layer, a job's feed re-reads its job; an owner's feed (`owner_id`) re-reads the owner's
    jobs that changed since it last heard from the layer before the outage.
    """

    name = "job-feed"
    # An owner's catch-up re-reads at most this many jobs, newest first: an outage during which
    # more of them changed leaves the older ones to their next update (or to REST).
    CATCH_UP_LIMIT = 500
    # Changes are stamped by other machines' clocks, and commit a little after their stamp.
    CATCH_UP_MARGIN = timedelta(minutes=1)
    # The last `seq` is kept for this many jobs, the most recently updated: an owner's feed
    # lives as long as the owner has a tab open, and must not grow with every job they run.
    REMEMBERED_JOBS = 1000

    def __init__(self, group: str, *, job_id: str | None, owner_id: int | None = None) -> None:
        super().__init__(group)
        self.job_id = job_id  # one job: its `seq` orders it; else many jobs, ordered each
        self.owner_id = owner_id
        self.single = job_id is not None
        self.last_seq: dict[str, int] = {}
        # When the layer delivered to this feed: the times within the last `recovery_window()`
        # (one a second at most), and the latest before them. Its sockets joined after the
        # feed was made, so nothing earlier concerns them.
        self.heard_lately: deque[datetime] = deque()
        self.heard_before = timezone.now()

    @classmethod
    async def open(cls, group: str, /, *, job_id: str | None, owner_id: int | None = None) -> Self:
        """The feed of one job's group (`job_id`) or of an owner's (`owner_id`)."""
        return cls(group, job_id=job_id, owner_id=owner_id)

    async def handle(self, event: dict[str, Any]) -> None:
        if event["type"] == CHECK:
            await self._catch_up()
            return
        self._heard(timezone.now())
        if event["type"] == JOB_UPDATE:
            self._update(str(event["job"]), int(event["seq"]), event["frame"])
            state = event["frame"]["job"]
            if self.single and state["status"] in FINAL:
                # All its output is written: what has not come, the layer lost (or it is late).
                await self._repair_output(int(state["output_chunks"]))
        elif event["type"] == JOB_LOG:
            self._log_line(event["frame"])
        elif event["type"] == JOB_OUTPUT:
            await self._output(event["frame"])
        elif event["type"] == JOB_SHARE_ENDED:
            self.end_share(int(event["share"]), "share_revoked")

    def end_share(self, share_id: int, reason: str) -> None:
        """The subscriptions that follow the job with this share link end here, at once (no
        frame of the job reaches them after), and their sockets are told why."""
        for subscription in list(self.subscriptions):
            if subscription.share_id == share_id:
                self.subscriptions.discard(subscription)
                try:
                    subscription.end(reason)
                except Exception:
                    logger.debug("ending %s failed", subscription.conn_id, exc_info=True)

    async def _catch_up(self) -> None:
        """Deliveries resumed after an outage: send what changed meanwhile, in its current state.

        An owner's feed cannot go by the jobs it has relayed: one created, or first changed,
        during the outage is not among them.
        """
        now = timezone.now()
        if self.owner_id is None:
            known = {*self.last_seq, *([self.job_id] if self.job_id else [])}
            states = await read_job_states(job_ids=sorted(known))
        else:
            since = self._heard_before(now) - self.CATCH_UP_MARGIN
            states = await read_job_states_changed_since(
                owner_id=self.owner_id, since=since, limit=self.CATCH_UP_LIMIT
            )
            if len(states) >= self.CATCH_UP_LIMIT:
                logger.warning(
                    "%s: catch-up stopped at the newest %d jobs", self.group, len(states)
                )
        for state in reversed(states):  # oldest job first
            self._update(state.id, state.seq, events.dump(job_update_frame(state)))
            if self.single:
                await self._repair_output(state.output_chunks)

    def _heard(self, now: datetime) -> None:
        """Note that the layer delivered to this feed at `now`."""
        if not self.heard_lately or now - self.heard_lately[-1] >= timedelta(seconds=1):
            self.heard_lately.append(now)
        self._heard_before(now)

    def _heard_before(self, now: datetime) -> datetime:
        """The last time the layer delivered to this feed, `recovery_window()` before `now`.

        At a check, that is before the outage that just ended: deliveries may have resumed up
        to that window before the check, so what came within it may have come after the outage.
        """
        window = self.recovery_window()
        while self.heard_lately and self.heard_lately[0] < now - window:
            self.heard_before = self.heard_lately.popleft()
        return self.heard_before

    @staticmethod
    def recovery_window() -> timedelta:
        """How long after deliveries resume the hub may take to send its check, at the most.

        Once this process receives again, the heartbeat tick under way ends (within its
        timeout), the next sends a heartbeat, the one after sees it back and sends the check.
        The window is generous: too long a one only makes a catch-up read more.
        """
        interval = settings.SWITCHBOARD_HEARTBEAT
        return timedelta(seconds=3 * (interval + max(2 * interval, 5.0)))

    def _update(self, job: str, seq: int, frame: dict[str, Any]) -> None:
        if seq <= self.last_seq.get(job, 0):
            return
        self.last_seq.pop(job, None)
        self.last_seq[job] = seq  # the most recently updated job last
        if len(self.last_seq) > self.REMEMBERED_JOBS:
            del self.last_seq[next(iter(self.last_seq))]
        text = json.dumps(frame)
        for subscription in list(self.subscriptions):
            deliver(subscription, seq if self.single else None, text)

    def _log_line(self, frame: dict[str, Any]) -> None:
        number = int(frame["number"])
        text = json.dumps(frame)
        for subscription in list(self.subscriptions):
            if number > subscription.log_after:
                deliver(subscription, None, text)

    async def _output(self, frame: dict[str, Any]) -> None:
        """A job's output chunks, to each subscriber that lacks them, in order: chunks that the
        layer lost before them (a gap in `seq`) are read from the database first."""
        first = int(frame["chunks"][0]["seq"])
        await self._repair_output(first - 1)
        for subscription in list(self.subscriptions):
            try:
                subscription.deliver_output(frame)
            except Exception:
                logger.debug("delivery to %s failed", subscription.conn_id, exc_info=True)

    async def _repair_output(self, upto: int) -> None:
        """Send each live subscriber the chunks up to `upto` it has not had, from the database."""
        behind = [s for s in self.subscriptions if s.pending is None and s.output_after < upto]
        if not behind or self.job_id is None:
            return
        after = min(s.output_after for s in behind)
        while after < upto:
            chunks = await read_job_output(
                job_id=self.job_id, after=after, limit=min(upto - after, OUTPUT_PAGE_MAX)
            )
            if not chunks:
                return  # no longer kept, or not committed yet: the live frame brings it
            frame = events.dump(
                events.JobOutputFrame(
                    channel=job_channel(self.job_id), job_id=self.job_id, chunks=chunks
                )
            )
            metrics.GAPS_REPAIRED.labels("job_output").inc(len(chunks))
            for subscription in behind:
                subscription.deliver_output(frame)
            after = chunks[-1].seq

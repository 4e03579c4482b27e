"""The proactive-update scheduler: one leader runs the sweep every minute, with catch-up.

APScheduler 3 runs the sweep as an interval job kept in the app database
(``SQLAlchemyJobStore``, table ``apscheduler_jobs``). After downtime the stored next run
time lies in the past. ``coalesce=True`` turns the missed runs into one, and
``misfire_grace_time`` (``SWITCHBOARD_SCHEDULER_MISFIRE_GRACE``) is far longer than the
interval, so exactly one catch-up run happens. The sweep itself then finds what became due
meanwhile, within the catch-up window (``inbox.proactive.sending``).

On PostgreSQL only the process that holds a session-level advisory lock runs the
scheduler. The lock lives on a connection of its own: when the leader dies, PostgreSQL
ends that connection and releases the lock, and a standby, which retries every
``SWITCHBOARD_SCHEDULER_LEADER_RETRY`` seconds, takes over. A leader that finds its lock
connection broken stops its scheduler at once. Two leaders for a moment would still send
nothing twice, because each occurrence is guarded by its unique row. SQLite serves one
process, which leads without a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from gateway import Switchboard
from gateway.config import proactive_settings_from
from gateway.locks import AdvisoryLock
from inbox.models import utcnow
from inbox.proactive.sending import SweepReport, sweep

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "proactive_sweep"
JOBS_TABLE = "apscheduler_jobs"
# The advisory lock key of the scheduler leader (any constant; 7316201 is the event lock's).
LEADER_LOCK_KEY = 7316202

# The job store saves a reference to a module-level function, never an object, so the
# stored job finds this process's scheduler here, by database URL.
_RUNNERS: dict[str, ProactiveScheduler] = {}
_RUNNERS_LOCK = threading.Lock()


def run_sweep_job(runner_key: str) -> None:
    """Run one sweep for the scheduler registered under ``runner_key`` (the stored job's target)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(runner_key)
    if runner is None:
        log.warning("proactive sweep job fired, but no scheduler of this process leads for its database")
        return
    runner.run_sweep()


class ProactiveScheduler:
    """Runs the proactive sweep in this process whenever this process is the leader.

    ``clock`` exists for tests that move time; ``on_sweep`` is called with each report.
    """

    def __init__(
        self,
        state: Switchboard,
        stop: threading.Event,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_sweep: Callable[[SweepReport], None] | None = None,
    ):
        self.state = state
        self.stop_event = stop
        self.clock = clock
        self.on_sweep = on_sweep
        self.settings = proactive_settings_from(state.config)
        self.runner_key = state.engine.url.render_as_string(hide_password=True)
        self.uses_lock = state.engine.dialect.name == "postgresql"
        self.lock = AdvisoryLock(state.engine, LEADER_LOCK_KEY, "scheduler leader lock") if self.uses_lock else None
        self.scheduler: BackgroundScheduler | None = None
        self.became_leader = threading.Event()
        self._thread: threading.Thread | None = None
        self._sweep_lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self.scheduler is not None

    def start(self) -> None:
        """Start the election loop in a thread; it starts the scheduler once this process leads."""
        self._thread = threading.Thread(target=self._elect, name="proactive-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._step_down()
        if self.lock is not None:
            self.lock.dispose()

    def _elect(self) -> None:
        retry = self.state.config.scheduler_leader_retry
        log.info("proactive scheduler started%s", " (standby until it holds the leader lock)" if self.uses_lock else "")
        while not self.stop_event.is_set():
            try:
                self._check_leadership()
            except Exception:
                log.exception("proactive scheduler: leadership check failed")
                self._step_down()
            self.stop_event.wait(retry)
        log.info("proactive scheduler stopped")

    def _check_leadership(self) -> None:
        if self.lock is None:
            if not self.is_leader:
                self._lead()
            return
        if self.is_leader:
            if not self.lock.still_held():
                log.warning("proactive scheduler lost the leader lock; standing by")
                self._step_down()
            return
        if self.lock.try_acquire():
            log.info("proactive scheduler holds the leader lock; scheduling sweeps")
            self._lead()

    def _lead(self) -> None:
        """Start APScheduler with the persistent job store and make sure the sweep job exists."""
        config = self.state.config
        scheduler = BackgroundScheduler(
            timezone="UTC",
            jobstores={"default": SQLAlchemyJobStore(engine=self.state.engine, tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={
                # Missed runs after downtime become one run, which the grace time lets happen.
                "coalesce": True,
                "misfire_grace_time": config.scheduler_misfire_grace,
                "max_instances": 1,
            },
        )
        with _RUNNERS_LOCK:
            _RUNNERS[self.runner_key] = self
        scheduler.start(paused=True)
        trigger = IntervalTrigger(seconds=config.proactive_sweep_interval, timezone="UTC")
        job = scheduler.get_job(SWEEP_JOB_ID)
        if job is None or getattr(job.trigger, "interval", None) != trigger.interval:
            # A new job, or a changed interval: the stored run time no longer fits.
            scheduler.add_job(
                run_sweep_job, trigger, id=SWEEP_JOB_ID, kwargs={"runner_key": self.runner_key},
                replace_existing=True, next_run_time=utcnow(),
            )
        else:
            log.info("proactive sweep job found, next run at %s", job.next_run_time)
        scheduler.resume()
        self.scheduler = scheduler
        self.became_leader.set()

    def _step_down(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        self.became_leader.clear()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        with _RUNNERS_LOCK:
            if _RUNNERS.get(self.runner_key) is self:
                del _RUNNERS[self.runner_key]

    def run_sweep(self) -> SweepReport | None:
        """Sweep once and wake the outbox dispatcher when updates were queued."""
        if self.lock is not None and not self.lock.still_held():
            log.warning("proactive sweep skipped: this process no longer holds the leader lock")
            return None
        with self._sweep_lock:
            report = sweep(self.state.session_factory, self.settings, self.clock(), stop=self.stop_event.is_set)
        if report.found or report.synced:
            log.info("proactive sweep: %s", report.summary())
        if report.results.get("queued"):
            self.state.outbox_wakeup.set()
        if self.on_sweep is not None:
            self.on_sweep(report)
        return report

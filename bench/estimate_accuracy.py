"""How close the first-response estimate comes to what happens, on a generated history.

A queue is simulated with known numbers: customers arrive at random (a Poisson process,
``--rate`` per hour, day and night), ``--agents`` agents answer them first come, first
served, two minutes after they pick one up, and resolve it after an exponentially
distributed handling time (mean ``--handling`` minutes). The history is replayed into a
fresh SQLite database in time order: each arrival, first agent reply and resolution is
written when it happens. At each arrival after the warm-up (``--warm-up`` days, 28 by
default), the estimate that a proactive update would quote
(``estimate_for(...).first_response``) is taken and later compared with the real wait for
the first reply. ``--warm-up 0`` measures a new workspace, whose history starts empty.

It prints the median absolute error of the estimate, next to the median real wait as the
reference, and the share of estimates within a factor of two.

    .venv/bin/python -m bench.estimate_accuracy [--weeks 6] [--rate 2.5] [--agents 3] [--handling 45] [--warm-up 28]
"""

from __future__ import annotations

import argparse
import heapq
import logging
import random
import statistics
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from gateway import create_app, get_state
from gateway.config import Config
from gateway.database import upgrade_database
from inbox.agents import create_agent
from inbox.channel_config import add_channel
from inbox.models import Contact, Conversation, ConversationActivity, Message, utcnow
from inbox.proactive.estimates import estimate_for

PICKUP_TO_REPLY = timedelta(minutes=2)


@dataclass
class Case:
    """One simulated conversation with its known times."""

    number: int
    arrival: datetime
    first_response: datetime | None = None
    resolution: datetime | None = None


def simulate(weeks: int, rate: float, agents: int, handling_minutes: float, start: datetime, seed: int) -> list[Case]:
    """Return the cases of a first-come, first-served queue with ``agents`` servers."""
    rng = random.Random(seed)
    cases: list[Case] = []
    moment = start
    end = start + timedelta(weeks=weeks)
    while True:
        moment += timedelta(hours=rng.expovariate(rate))
        if moment >= end:
            break
        cases.append(Case(len(cases) + 1, moment))
    free_at = [start] * agents
    heapq.heapify(free_at)
    for case in cases:
        agent_free = heapq.heappop(free_at)
        picked_up = max(agent_free, case.arrival)
        case.first_response = picked_up + PICKUP_TO_REPLY
        case.resolution = case.first_response + timedelta(minutes=rng.expovariate(1 / handling_minutes))
        heapq.heappush(free_at, case.resolution)
    return cases


def replay(state, cases: list[Case], start: datetime, warm_up: timedelta) -> list[tuple[timedelta, timedelta]]:
    """Write the history in time order; return (estimate, real wait) for arrivals after the warm-up."""
    with state.session_factory() as session:
        channel = add_channel(session, "whatsapp", "Bench", "+14155238886", {"account_sid": "AC" + "0" * 32, "auth_token": "x"})
        agent = create_agent(session, "bench@example.com", "Bench Agent", "bench password 1")
        session.commit()
        channel_id, agent_id = channel.id, agent.id

    events: list[tuple[datetime, int, str, Case]] = []
    for case in cases:
        events.append((case.arrival, 0, "arrive", case))
        events.append((case.first_response, 1, "reply", case))
        events.append((case.resolution, 2, "resolve", case))
    events.sort(key=lambda event: (event[0], event[1], event[3].number))

    pairs = []
    with state.session_factory() as session:
        for moment, _, kind, case in events:
            if kind == "arrive":
                contact = Contact(name=f"Customer {case.number}", created_at=moment)
                conversation = Conversation(
                    id=case.number, channel_id=channel_id, contact=contact, status="open", created_at=moment,
                    updated_at=moment, last_message_at=moment, last_inbound_at=moment,
                )
                session.add(conversation)
                session.add(Message(
                    conversation=conversation, channel_id=channel_id, direction="inbound", contact=contact,
                    provider_message_id=f"SM{case.number:032x}", text="Hello", created_at=moment,
                ))
                session.flush()
                if moment - start >= warm_up:
                    estimate = estimate_for(session, conversation, moment).first_response
                    if estimate is not None:
                        pairs.append((estimate, case.first_response - case.arrival))
            elif kind == "reply":
                session.add(Message(
                    conversation_id=case.number, channel_id=channel_id, direction="outbound", agent_id=agent_id,
                    text="On it.", created_at=moment,
                ))
            else:
                session.execute(update(Conversation).where(Conversation.id == case.number).values(status="resolved"))
                session.add(ConversationActivity(
                    conversation_id=case.number, agent_id=agent_id, action="status",
                    details={"from": "open", "to": "resolved"}, created_at=moment,
                ))
            session.flush()
        session.commit()
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", type=int, default=6, help="weeks of history, including the warm-up")
    parser.add_argument("--rate", type=float, default=2.5, help="arrivals per hour")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--handling", type=float, default=45.0, help="mean handling time in minutes")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--warm-up", type=float, default=28.0,
                        help="days of history before the first estimate is measured (0 for a new workspace)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    start = (utcnow() - timedelta(weeks=args.weeks + 1)).replace(microsecond=0)
    cases = simulate(args.weeks, args.rate, args.agents, args.handling, start, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        config = Config(database_url=f"sqlite:///{Path(folder) / 'bench.db'}", secret_key="bench", instance_dir=folder)
        state = get_state(create_app(config))
        upgrade_database(state.engine)
        pairs = replay(state, cases, start, timedelta(days=args.warm_up))
        state.engine.dispose()

    if not pairs:
        print("no estimates: the history is too short for the estimate's minimum of samples")
        return
    errors = [abs(estimate - real) for estimate, real in pairs]
    reals = [real for _, real in pairs]
    within_factor_two = sum(1 for estimate, real in pairs if real / 2 <= estimate <= real * 2 or abs(estimate - real) <= timedelta(minutes=5))
    median_error = statistics.median(errors)
    median_real = statistics.median(reals)
    print(f"{len(cases)} conversations over {args.weeks} weeks; {len(pairs)} estimates after {args.warm_up:g} days of warm-up "
          f"({args.rate:g} arrivals/h, {args.agents} agents, {args.handling:g} min mean handling)")
    print(f"median absolute error of the first-response estimate: {_minutes(median_error)} "
          f"(median real wait {_minutes(median_real)}; ratio {median_error / median_real:.2f})")
    print(f"estimates within a factor of two (or 5 minutes) of the real wait: {within_factor_two / len(pairs):.0%}")


def _minutes(value: timedelta) -> str:
    return f"{value.total_seconds() / 60:.1f} min"


if __name__ == "__main__":
    main()

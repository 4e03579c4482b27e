"""Socket.IO: authenticated connections, committed events to agents, replay on reconnect.

Every signed-in agent joins the ``agents`` room. Committed events (see ``inbox.events``) are
emitted to that room under their type, each payload carrying ``event_id``. A client passes
the last id it saw as ``auth.last_event_id`` when it connects. The server first sends it
every event after that id, so a dropped connection misses nothing. When the gap is larger
than ``REPLAY_LIMIT``, the client gets ``resync`` and reloads its views instead.

An event whose payload has ``recipient_id`` (an @mention's notification) goes only to that
agent's room, ``agent:<id>``, both live and on replay.

``typing`` and ``presence`` are ephemeral: they are relayed, not stored, and carry no id.

A connection lasts only as long as its credential. When an agent is disabled, a sign-in
ends or a token is revoked, ``check_agent_connections`` closes the agent's connections
whose sign-in or token no longer works. Besides, ``ConnectionChecker`` checks every
connection every ``socket_check_interval`` seconds, so a connection also closes when its
sign-in passes the idle timeout or the absolute lifetime, or when another process
revoked its credential.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import socketio as socketio_package
from flask import Flask, request, session
from flask_socketio import SocketIO, emit, join_room
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from inbox.agents import SessionLimits, agent_for_session, agent_for_token
from inbox.assignment import OnlineAgents, use_online_agents
from inbox.events import add_publisher, event_message, events_after
from inbox.models import Agent
from inbox.presence import HEARTBEAT_SECONDS, new_process_id, publish_presence, shared_online_agent_ids

log = logging.getLogger(__name__)

AGENTS_ROOM = "agents"
# The method of a Redis message that carries several emits (BatchingRedisManager).
BATCH_METHOD = "switchboard.emit_batch"
# The method of a Redis message that requests the other web processes to check an agent's connections.
RECHECK_METHOD = "switchboard.recheck_agent"
REPLAY_LIMIT = 1000


class BatchingRedisManager(socketio_package.RedisManager):
    """Socket.IO's Redis message queue, which also carries several events in one Redis message.

    A batch of webhooks commits hundreds of events at once. Published one by one, each cost
    the committing process a Redis round trip and each web process a Redis message to read
    and decode. ``emit_batch`` publishes them as one message, and ``_listen`` turns that
    message back into the single emits that python-socketio's listener handles, in order.
    Every process that uses the queue must run this class, because python-socketio ignores
    a message whose method it does not know.

    It also carries ``recheck_agent``: after an agent was disabled or lost a credential, the
    process that made the change requests the others to check that agent's connections at
    once, instead of at their next periodic check.
    """

    # Called with an agent's id when another process requests a recheck; set by ``init_app``.
    on_recheck: Callable[[int], None] | None = None

    def recheck_agent(self, agent_id: int) -> int | None:
        """Ask every other process on the queue to check the agent's connections.

        Returns how many processes Redis delivered the request to, or None when publishing
        failed (python-socketio logs the error).
        """
        return self._publish({"method": RECHECK_METHOD, "host_id": self.host_id, "agent_id": agent_id})

    def emit_batch(self, emits: list[tuple[str, dict[str, Any], str]]) -> None:
        """Emit each (event, JSON payload, room) to the clients of every process, in order."""
        for event, payload, room in emits:
            # The clients connected to this process; the others get the published batch.
            if self._has_local_clients("/", room):
                super().emit(event, payload, namespace="/", room=room, ignore_queue=True)
        self._publish({
            "method": BATCH_METHOD, "host_id": self.host_id, "namespace": "/",
            "emits": [[event, payload, room] for event, payload, room in emits],
        })

    def _has_local_clients(self, namespace: str, room: str) -> bool:
        """Return whether a client of this process is in the room.

        python-socketio encodes an event's packet before it looks for the room's clients, so
        a worker, which has none, and a web process without agents in a room skip the emit.
        """
        # NOTE: reads python-socketio 5's room table (BaseManager.rooms: namespace -> room -> clients).
        return bool(self.rooms.get(namespace, {}).get(room))

    def _listen(self) -> Iterator[Any]:
        # NOTE: overrides a private generator of python-socketio 5 (RedisManager._listen),
        # whose items its listener thread accepts either encoded or as decoded dicts.
        for message in super()._listen():
            try:
                data = self.json.loads(message)
            except ValueError:
                yield message  # the listener skips what it cannot decode
                continue
            if isinstance(data, dict) and data.get("method") == RECHECK_METHOD:
                agent_id = data.get("agent_id")
                if data.get("host_id") != self.host_id and self.on_recheck is not None and isinstance(agent_id, int):
                    self.on_recheck(agent_id)
                continue
            if not (isinstance(data, dict) and data.get("method") == BATCH_METHOD):
                yield data
                continue
            for event, payload, room in data["emits"]:
                if not self._has_local_clients(data["namespace"], room):
                    continue
                yield {
                    "method": "emit", "event": event, "data": [payload], "binary": False,
                    "namespace": data["namespace"], "room": room, "skip_sid": None, "callback": None,
                    "host_id": data["host_id"],
                }


def request_agent_recheck(message_queue: str, agent_id: int) -> int | None:
    """Ask the web processes on a Redis queue to check an agent's connections, from outside them.

    Returns what ``BatchingRedisManager.recheck_agent`` returns.
    """
    manager = BatchingRedisManager(message_queue, channel="flask-socketio", write_only=True)
    return manager.recheck_agent(agent_id)


class JsonPacket(socketio_package.packet.Packet):
    """A Socket.IO packet whose data is never scanned for bytes.

    python-socketio's packet walks every value of an outgoing payload to find bytes to send
    as binary attachments. In a sampled profile of a web process under the webhook bench,
    that walk took over a quarter of the time spent relaying events. Everything this app
    emits is JSON (events, presence, typing), so the packet goes out as a plain JSON event,
    and a payload with bytes would fail to encode instead.
    """

    uses_binary_events = False


def socketio_options(message_queue: str | None) -> dict[str, Any]:
    """Return the keyword arguments for ``SocketIO``: the JSON packet, and for a Redis
    queue the batching manager."""
    options: dict[str, Any] = {"serializer": JsonPacket}
    if message_queue and message_queue.startswith(("redis://", "rediss://")):
        # The channel name Flask-SocketIO gives its own Redis manager, so both can share a queue.
        options["client_manager"] = BatchingRedisManager(message_queue, channel="flask-socketio")
    return options


def make_emitter_publisher(socketio: SocketIO):
    """Return an event publisher that emits each committed event to every agent."""

    def publish(messages: list[dict[str, Any]]) -> None:
        manager = socketio.server.manager
        if len(messages) > 1 and isinstance(manager, BatchingRedisManager):
            manager.emit_batch([(message["type"], message, _event_room(message)) for message in messages])
            return
        for message in messages:
            socketio.emit(message["type"], message, to=_event_room(message))

    return publish


def agent_room(agent_id: int) -> str:
    return f"agent:{agent_id}"


def _event_room(message: dict[str, Any]) -> str:
    recipient = message.get("recipient_id")
    return agent_room(recipient) if isinstance(recipient, int) else AGENTS_ROOM


class Presence:
    """The connected agents, by Socket.IO session id."""

    def __init__(self) -> None:
        self._agents: dict[str, dict[str, Any]] = {}
        self._sign_ins: dict[str, str] = {}
        # The API token a connection authenticated with, when it used one.
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, sid: str, agent: dict[str, Any], sign_in: str | None, token: str | None = None) -> None:
        with self._lock:
            self._agents[sid] = agent
            if sign_in:
                self._sign_ins[sid] = sign_in
            if token:
                self._tokens[sid] = token

    def credentials_of_agent(self, agent_id: int) -> list[tuple[str, str | None, str | None]]:
        """Return (sid, sign-in token, API token) of each connection of the agent."""
        with self._lock:
            return [
                (sid, self._sign_ins.get(sid), self._tokens.get(sid))
                for sid, agent in self._agents.items() if agent["id"] == agent_id
            ]

    def all_credentials(self) -> list[tuple[str, str | None, str | None]]:
        """Return (sid, sign-in token, API token) of every connection."""
        with self._lock:
            return [(sid, self._sign_ins.get(sid), self._tokens.get(sid)) for sid in self._agents]

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._agents)

    def sids_of_sign_in(self, sign_in: str) -> list[str]:
        with self._lock:
            return [sid for sid, token in self._sign_ins.items() if token == sign_in]

    def remove(self, sid: str) -> dict[str, Any] | None:
        with self._lock:
            self._sign_ins.pop(sid, None)
            self._tokens.pop(sid, None)
            return self._agents.pop(sid, None)

    def get(self, sid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._agents.get(sid)

    def online(self) -> list[dict[str, Any]]:
        with self._lock:
            unique = {agent["id"]: agent for agent in self._agents.values()}
        return list(unique.values())


def _authenticate(
    session_factory: sessionmaker[Session], auth: Any, limits: SessionLimits, sign_in: str | None
) -> dict[str, Any] | None:
    """Return the connecting agent from the session cookie or an ``auth.token``, or None.

    A browser whose password is temporary is refused until it has chosen a new one.
    """
    with session_factory() as db:
        agent: Agent | None = None
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(token, str) and token:
            agent = agent_for_token(db, token)
        elif sign_in:
            agent = agent_for_session(db, sign_in, limits)
            if agent is not None and agent.must_change_password:
                agent = None
        db.commit()
        if agent is None or not agent.is_active:
            return None
        return {"id": agent.id, "name": agent.name}


def _still_valid(
    session_factory: sessionmaker[Session], limits: SessionLimits, sign_in: str | None, token: str | None
) -> bool:
    with session_factory() as db:
        if token:
            agent = agent_for_token(db, token)
        elif sign_in:
            agent = agent_for_session(db, sign_in, limits)
        else:
            agent = None
        db.rollback()  # a check, not a request: no last-seen time is written
        return agent is not None


class ConnectionChecker:
    """The check that closes live connections whose sign-in or API token stopped working.

    ``check`` runs for one agent after an admin action. The background loop checks every
    connection each ``interval`` seconds, because a sign-in also ends by time alone (the
    idle timeout and the absolute lifetime), with no request that could notice it. The
    loop runs only while this process has connections: the first connection starts it,
    and it stops when it finds none.
    """

    def __init__(
        self, socketio: SocketIO, presence: Presence, session_factory: sessionmaker[Session],
        limits: SessionLimits, interval: float,
    ) -> None:
        self._socketio = socketio
        self._presence = presence
        self._session_factory = session_factory
        self._limits = limits
        self.interval = interval
        self._running = False
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

    def check(self, connections: list[tuple[str, str | None, str | None]]) -> int:
        """Disconnect each (sid, sign-in token, API token) whose credential failed; return how many."""
        closed = 0
        for sid, sign_in, token in connections:
            try:
                valid = _still_valid(self._session_factory, self._limits, sign_in, token)
            except SQLAlchemyError:
                log.exception("failed to check the credential of Socket.IO connection %s", sid)
                continue
            if not valid:
                self._socketio.server.disconnect(sid)
                closed += 1
        return closed

    def ensure_running(self) -> None:
        """Start the background loop unless it is running. Call after adding a connection."""
        with self._lock:
            if self._running:
                return
            self._running = True
        self._socketio.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            self._socketio.sleep(self.interval)
            with self._lock:
                # Decided under the lock, so that a connection added now starts a new loop.
                if not self._presence:
                    self._running = False
                    return
            try:
                closed = self.check(self._presence.all_credentials())
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("the periodic check of Socket.IO connections failed")
                continue
            if closed:
                log.info("closed %d Socket.IO connection(s) whose sign-in or token ended", closed)


class PresenceHeartbeat:
    """Writes the agents connected to this process to the database (``inbox.presence``).

    A thread writes soon after an agent connects or disconnects, and every
    ``HEARTBEAT_SECONDS`` while agents are connected, so that other processes, a worker
    among them, see who is online. It starts with the first connection and ends once no agent
    is connected.
    """

    def __init__(self, online: OnlineAgents, session_factory: sessionmaker[Session]) -> None:
        self.process_id = new_process_id()
        self._online = online
        self._session_factory = session_factory
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._published = False

    def changed(self) -> None:
        """Note that an agent connected or disconnected; the thread writes it."""
        with self._lock:
            if self._stopped:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="presence-heartbeat", daemon=True)
                self._thread.start()
        self._changed.set()

    def publish(self) -> None:
        """Write this process's connected agents now."""
        self._published = True
        with self._session_factory() as db:
            publish_presence(db, self.process_id, self._online.counts())

    def stop(self) -> None:
        """Remove this process's rows and write nothing more, as the process shuts down.

        Other processes then see its agents offline at once, instead of after ``FRESH_FOR``.
        """
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._changed.set()
        if thread is not None:
            thread.join(5)
        if not self._published:
            return  # no agent ever connected, so there are no rows to remove
        try:
            with self._session_factory() as db:
                publish_presence(db, self.process_id, {})
        except SQLAlchemyError:
            log.exception("failed to remove the presence of process %s", self.process_id)

    def _run(self) -> None:
        while True:
            self._changed.wait(HEARTBEAT_SECONDS)
            self._changed.clear()
            if self._stopped:
                with self._lock:
                    self._thread = None
                return
            try:
                self.publish()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive a database outage
                log.exception("failed to write the presence of process %s", self.process_id)
            with self._lock:
                # Without connected agents there is nothing to renew, so the thread ends and the
                # next change starts another. A waiting thread would keep the app's engine alive.
                if self._stopped or (not self._online.ids() and not self._changed.is_set()):
                    self._thread = None
                    return


def stop_presence(app: Flask) -> None:
    """Stop the app's presence heartbeat and remove its rows, when it has one."""
    heartbeat = app.extensions.get("switchboard.presence_heartbeat")
    if heartbeat is not None:
        heartbeat.stop()


def _online_agents(
    session_factory: sessionmaker[Session], presence: Presence, heartbeat: PresenceHeartbeat
) -> list[dict[str, Any]]:
    """Return the agents connected to this process and those other processes reported."""
    agents = {agent["id"]: agent for agent in presence.online()}
    try:
        with session_factory() as db:
            elsewhere = shared_online_agent_ids(db, exclude_process=heartbeat.process_id) - agents.keys()
            if elsewhere:
                rows = db.execute(select(Agent.id, Agent.name).where(Agent.id.in_(elsewhere), Agent.is_active))
                agents.update({agent_id: {"id": agent_id, "name": name} for agent_id, name in rows})
    except SQLAlchemyError:
        log.exception("failed to read the agents online in other processes")
    return list(agents.values())


def _online_elsewhere(session_factory: sessionmaker[Session], heartbeat: PresenceHeartbeat, agent_id: int) -> bool:
    """Return whether another process reported the agent connected."""
    try:
        with session_factory() as db:
            return agent_id in shared_online_agent_ids(db, exclude_process=heartbeat.process_id)
    except SQLAlchemyError:
        log.exception("failed to read whether agent %s is online in other processes", agent_id)
        return False


def _replay(session_factory: sessionmaker[Session], auth: Any, agent_id: int) -> None:
    last = auth.get("last_event_id") if isinstance(auth, dict) else None
    if last is None:
        return
    try:
        last_id = int(last)
    except (TypeError, ValueError):
        last_id = -1
    if not 0 <= last_id < 2**63:
        emit("error", {"code": "invalid", "message": "last_event_id must be a whole number from 0."})
        return
    with session_factory() as db:
        missed = events_after(db, last_id, limit=REPLAY_LIMIT + 1)
        if len(missed) > REPLAY_LIMIT:
            emit("resync", {"reason": f"more than {REPLAY_LIMIT} events were missed"})
            return
        for row in missed:
            message = event_message(row)
            if _event_room(message) in (AGENTS_ROOM, agent_room(agent_id)):
                emit(message["type"], message)


def init_app(app: Flask, state: Any) -> None:
    socketio: SocketIO = state.socketio
    session_factory = state.session_factory
    presence = Presence()
    add_publisher(session_factory, make_emitter_publisher(socketio))
    # Automatic assignment gives conversations only to agents connected here.
    online = OnlineAgents()
    use_online_agents(session_factory, online)
    heartbeat = PresenceHeartbeat(online, session_factory)
    app.extensions["switchboard.presence_heartbeat"] = heartbeat

    limits = SessionLimits(state.config.session_lifetime, state.config.session_absolute_lifetime)
    checker = ConnectionChecker(socketio, presence, session_factory, limits, state.config.socket_check_interval)
    manager = socketio.server.manager
    shared_queue = manager if isinstance(manager, BatchingRedisManager) else None

    def check_local_connections(agent_id: int) -> int:
        closed = checker.check(presence.credentials_of_agent(agent_id))
        if closed:
            log.info("closed %d Socket.IO connection(s) of agent %s", closed, agent_id)
        return closed

    def check_agent_connections(agent_id: int) -> int:
        """Close the agent's connections whose credential stopped working; return how many here.

        Call it after the change committed. With a Redis queue, the other web processes
        check the agent's connections on theirs as soon as they read the request.
        """
        closed = check_local_connections(agent_id)
        if shared_queue is not None:
            shared_queue.recheck_agent(agent_id)
        return closed

    def disconnect_sign_in(sign_in: str, agent_id: int | None) -> None:
        """Close the connections of an ended sign-in: here at once, elsewhere by a recheck."""
        for sid in presence.sids_of_sign_in(sign_in):
            socketio.server.disconnect(sid)
        if shared_queue is not None and agent_id is not None:
            shared_queue.recheck_agent(agent_id)

    if shared_queue is not None:
        # The queue's listener thread relays every event, so the database checks run apart.
        shared_queue.on_recheck = lambda agent_id: socketio.start_background_task(check_local_connections, agent_id)

    app.extensions["switchboard.disconnect_session"] = disconnect_sign_in
    app.extensions["switchboard.check_agent_connections"] = check_agent_connections
    app.extensions["switchboard.connection_checker"] = checker

    @socketio.on("connect")
    def connect(auth: Any = None) -> bool:
        sign_in = session.get("sign_in")
        agent = _authenticate(session_factory, auth, limits, sign_in)
        if agent is None:
            log.info("refused a Socket.IO connection without valid credentials from %s", request.remote_addr)
            return False
        token = auth.get("token") if isinstance(auth, dict) and isinstance(auth.get("token"), str) else None
        presence.add(request.sid, agent, None if token else sign_in, token)
        checker.ensure_running()
        online.connected(agent["id"])
        heartbeat.changed()
        join_room(AGENTS_ROOM)
        join_room(agent_room(agent["id"]))
        _replay(session_factory, auth, agent["id"])
        emit("presence", {"event_id": None, "agent": agent, "online": True}, to=AGENTS_ROOM)
        emit("presence.snapshot", {"agents": _online_agents(session_factory, presence, heartbeat)})
        return True

    @socketio.on("disconnect")
    def disconnect(*args: Any) -> None:
        agent = presence.remove(request.sid)
        if agent is not None:
            online.disconnected(agent["id"])
            heartbeat.changed()
        if (
            agent is not None
            and agent["id"] not in {a["id"] for a in presence.online()}
            and not _online_elsewhere(session_factory, heartbeat, agent["id"])
        ):
            # Not to the leaving socket itself, which is already closing.
            emit(
                "presence", {"event_id": None, "agent": agent, "online": False},
                to=AGENTS_ROOM, include_self=False,
            )

    @socketio.on("typing")
    def typing(data: Any) -> None:
        agent = presence.get(request.sid)
        if agent is None or not isinstance(data, dict):
            return
        conversation_id = data.get("conversation_id")
        if not isinstance(conversation_id, int):
            return
        emit(
            "typing",
            {"event_id": None, "agent": agent, "conversation_id": conversation_id},
            to=AGENTS_ROOM,
            include_self=False,
        )

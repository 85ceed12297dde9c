"""The chat app itself: an in-memory store, users with locales, and simulated requests.

Each request sets the user and locale in :mod:`eventbus.context`, writes to the store and
dispatches an event, like a web handler would. Listeners read the context back through
:func:`observe`, which checks they saw the user and locale of the request that dispatched
their event — the demo's proof that context follows every queued listener.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import anyio

from eventbus import EventBus, context, define_key

from .events import ChatActivity, ChatId, NewChatEvent, NewUserMessage

__all__ = [
    "Locale",
    "Observation",
    "State",
    "USERS",
    "UserId",
    "current_locale",
    "current_user",
    "observe",
    "run_requests",
    "state",
]

UserId = define_key[str]("user_id")
Locale = define_key[str]("locale")

#: The demo's users and their locales.
USERS: dict[str, str] = {"alice": "en", "bruno": "pt-BR", "chen": "de", "dana": "fr"}
_NAMES = list(USERS)

TOPICS = ["release plan", "bug triage", "lunch", "onboarding", "the demo", "benchmarks"]
MESSAGES_PER_CHAT = 3
EVENTS_PER_CHAT = 1 + MESSAGES_PER_CHAT


@dataclass(frozen=True)
class Observation:
    """What one listener run saw in the context, against what the event says it should."""

    listener: str
    event_name: str
    chat_id: ChatId
    expected_user: str
    user: str | None
    locale: str | None

    @property
    def ok(self) -> bool:
        return self.user == self.expected_user and self.locale == USERS.get(self.expected_user)


@dataclass
class State:
    """The in-memory database plus what the listeners did, for the summary."""

    latency: float = 0.0
    chats: dict[ChatId, dict[str, object]] = field(default_factory=dict)
    messages: dict[ChatId, list[str]] = field(default_factory=dict)
    titles: dict[ChatId, str] = field(default_factory=dict)
    audit: list[tuple[str, str, ChatId]] = field(default_factory=list)
    title_attempts: Counter[ChatId] = field(default_factory=Counter)
    requests: int = 0
    checks: int = 0
    wrong: list[Observation] = field(default_factory=list)
    samples: list[Observation] = field(default_factory=list)
    retried_example: str | None = None


#: The current run's state; :func:`run_requests` replaces it.
state = State()


def current_user() -> str | None:
    """The user of the request being handled (what a listener reads)."""
    return context.get(UserId)


def current_locale() -> str | None:
    return context.get(Locale)


def observe(listener: str, event: ChatActivity) -> Observation:
    """Record the user/locale ``listener`` sees for ``event`` and check them."""
    seen = Observation(
        listener, event.event_name, event.chat_id, event.user_id, current_user(), current_locale()
    )
    state.checks += 1
    if not seen.ok:
        state.wrong.append(seen)
    elif len(state.samples) < 4 and all(s.listener != listener for s in state.samples):
        state.samples.append(seen)
    return seen


async def io() -> None:
    """Stand-in for a database or HTTP call."""
    if state.latency:
        await anyio.sleep(state.latency)
    else:
        await anyio.lowlevel.checkpoint()


def flaky_failures(chat_id: ChatId) -> int:
    """How many attempts the title service fails for a chat: some once, a few twice."""
    if chat_id.value % 50 == 7:
        return 2
    return 1 if chat_id.value % 10 == 3 else 0


async def run_requests(bus: EventBus, events: int, clients: int, latency: float) -> State:
    """Play ``events`` requests through ``clients`` concurrent clients; return the state.

    Each chat is one "create" request and then messages from several users; every request
    sets its own user and locale before dispatching.
    """
    global state
    state = State(latency=latency)
    chats = -(-events // EVENTS_PER_CHAT)
    clients = max(1, min(clients, chats))

    async def client(first: int) -> None:
        for number in range(first, chats, clients):
            budget = min(EVENTS_PER_CHAT, events - number * EVENTS_PER_CHAT)
            if budget <= 0:
                return
            await _chat_session(bus, number, budget)

    async with anyio.create_task_group() as tg:
        for first in range(clients):
            tg.start_soon(client, first)
    return state


async def _chat_session(bus: EventBus, number: int, budget: int) -> None:
    chat_id = ChatId(number)
    owner = _NAMES[number % len(_NAMES)]
    topic = TOPICS[number % len(TOPICS)]
    await _request(bus, owner, NewChatEvent(chat_id=chat_id, user_id=owner, topic=topic))
    for index in range(1, budget):
        sender = _NAMES[(number + index) % len(_NAMES)]
        text = f"message {index} about {topic}"
        await _request(bus, sender, NewUserMessage(chat_id=chat_id, user_id=sender, text=text))


async def _request(bus: EventBus, user: str, event: ChatActivity) -> None:
    """One web request: who is asking goes into the context, then the write and dispatch."""
    context.set(UserId, user)
    context.set(Locale, USERS[user])
    state.requests += 1
    if isinstance(event, NewChatEvent):
        state.chats[event.chat_id] = {"owner": user, "topic": event.topic}
        state.messages[event.chat_id] = []
    await bus.dispatch(event)

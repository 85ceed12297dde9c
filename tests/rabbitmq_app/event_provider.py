"""The provider ``eventbus work --provider rabbitmq_app.event_provider`` loads."""

from __future__ import annotations

from eventbus import Event, EventListener

from .events import ChatOpened, Doomed, Numbered, Slow
from .listeners import AlwaysFails, Record, RecordChat, SlowRecord

events: dict[type[Event], list[type[EventListener]]] = {
    Numbered: [Record],
    Slow: [SlowRecord],
    Doomed: [AlwaysFails],
    ChatOpened: [RecordChat],
}

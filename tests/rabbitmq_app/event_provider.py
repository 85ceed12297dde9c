"""The provider ``eventbus work --provider rabbitmq_app.event_provider`` loads."""

from __future__ import annotations

from .events import ChatOpened, Doomed, Numbered, Slow
from .listeners import AlwaysFails, Record, RecordChat, SlowRecord

events = {
    Numbered: [Record],
    Slow: [SlowRecord],
    Doomed: [AlwaysFails],
    ChatOpened: [RecordChat],
}

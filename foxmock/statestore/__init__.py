"""Where sequence counters and quota windows live: this process's memory, or Redis."""

from foxmock.statestore.base import (
    QuotaView,
    StateStore,
    StateUnavailable,
    Take,
    Taken,
    open_store,
)

__all__ = ["QuotaView", "StateStore", "StateUnavailable", "Take", "Taken", "open_store"]

"""The API's routes, one module per resource; each route parses, calls one function, replies."""

from xavyo_siem.api.routes import dead_letters, destinations, events, exports, health

__all__ = ["dead_letters", "destinations", "events", "exports", "health"]

"""What every servicer needs: the database, the settings and the page-token signer."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from runwire_server.settings import Settings
from runwire_server.storage.database import Database
from runwire_server.storage.paging import PageRequest, PageTokens, page_request


@dataclass(frozen=True)
class AppContext:
    db: Database
    settings: Settings
    tokens: PageTokens

    def page(self, request: Message, *, offset: int = 0) -> PageRequest:
        return page_request(
            request,
            page_size=getattr(request, "page_size", 0),
            offset=offset,
            default_size=self.settings.default_page_size,
            max_size=self.settings.max_page_size,
        )

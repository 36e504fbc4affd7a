"""The stored-completions contract: what the API layer asks of a store."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Order = Literal["asc", "desc"]
JSONDict = dict[str, Any]
Items = list[JSONDict]  # named here: inside CompletionStore, `list` is its method


class NotFound(LookupError):
    """No completion with this id for this owner (unknown, deleted or someone else's)."""

    def __init__(self, completion_id: str, param: str | None = None) -> None:
        super().__init__(completion_id)
        self.completion_id = completion_id
        self.param = param


class InvalidCursor(ValueError):
    """An `after` that is not an id of this list."""

    def __init__(self, after: str) -> None:
        super().__init__(after)
        self.after = after


@dataclass(slots=True)
class Page:
    """One page of a cursor-paginated list."""

    data: list[JSONDict] = field(default_factory=list)
    has_more: bool = False

    def body(self) -> JSONDict:
        """The OpenAI list object."""
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.data[0]["id"] if self.data else None,
            "last_id": self.data[-1]["id"] if self.data else None,
            "has_more": self.has_more,
        }


class CompletionStore(Protocol):
    """Stored chat completions, each visible only to the principal that stored it."""

    async def start(self) -> None:
        """Connect and migrate the schema to head."""
        ...

    async def close(self) -> None: ...

    async def save(self, *, owner: str, request: JSONDict, completion: JSONDict) -> None:
        """Persist a completion and the request that produced it; returns once committed."""
        ...

    async def get(self, owner: str, completion_id: str) -> JSONDict:
        """The stored ChatCompletion object; raises NotFound."""
        ...

    async def list(
        self,
        owner: str,
        *,
        model: str | None = None,
        metadata: dict[str, str] | None = None,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
    ) -> Page:
        """Completions by (created, insertion); raises NotFound for an unknown `after`."""
        ...

    async def update(self, owner: str, completion_id: str, metadata: dict[str, str]) -> JSONDict:
        """Replace the metadata and return the updated object; raises NotFound."""
        ...

    async def delete(self, owner: str, completion_id: str) -> None:
        """Delete a completion; raises NotFound."""
        ...

    async def messages(
        self,
        owner: str,
        completion_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
    ) -> Page:
        """The request's input messages, each with an id; raises NotFound."""
        ...

    async def save_response(self, *, owner: str, response: JSONDict, items: Items) -> None:
        """Persist a Responses API response and the items its model read."""
        ...

    async def update_response(
        self,
        owner: str,
        response: JSONDict,
        *,
        statuses: Collection[str] = ...,
        events: Items | None = None,
    ) -> bool:
        """Replace a stored response still in one of `statuses`; False if it was not."""
        ...

    async def response_events(self, owner: str, response_id: str) -> Items | None:
        """The stream events a background response saved; None if none; raises NotFound."""
        ...

    async def get_response(self, owner: str, response_id: str) -> JSONDict:
        """The stored Response object; raises NotFound."""
        ...

    async def delete_response(self, owner: str, response_id: str) -> None:
        """Delete a response and its items; raises NotFound."""
        ...

    async def response_context(self, owner: str, response_id: str) -> JSONDict:
        """`{"response": ..., "items": [...]}`: a response and the items it read."""
        ...

    async def response_items(
        self,
        owner: str,
        response_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "desc",
    ) -> Page:
        """A page of the items a response read; raises NotFound, InvalidCursor."""
        ...

    async def save_relayed(self, *, owner: str, response_id: str, upstream: str) -> None:
        """Note that `owner` created `response_id` on `upstream`'s own Responses API."""
        ...

    async def relayed_upstream(self, owner: str, response_id: str) -> str | None:
        """The upstream holding `owner`'s relayed response; None if it is not theirs."""
        ...

    async def forget_relayed(self, owner: str, response_id: str) -> None: ...

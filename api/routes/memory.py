"""``/v1/memory/{collection}``: long-term memory of the caller's tenant (put, search, forget).

Each request is a memory syscall made as the calling principal: authorized on
``memory:COLLECTION`` (``write`` to put and forget, ``read`` to search; a denial is audited)
and audited before and after it acts. Another tenant's collection of the same name is a
different collection: nothing crosses tenants.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import CurrentPrincipal, KernelDep
from kernos.kernel.memory import MAX_LIMIT

router = APIRouter(prefix="/v1/memory", tags=["memory"])

MAX_PUT = 1000
"""Most documents one ``POST /v1/memory/{collection}`` carries."""

MetadataValue = str | int | float | bool


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryPut(_Request):
    """Documents to store (upserted by id)."""

    documents: list[Annotated[str, Field(min_length=1, max_length=100_000)]] = Field(
        min_length=1, max_length=MAX_PUT, examples=[["Bin 17 on Elm Street overflows on Mondays."]]
    )
    ids: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None,
        description="One id per document; a known id replaces its document. Default: new ids "
        "(derived from the Idempotency-Key header when given, so a retry replaces).",
    )
    metadatas: list[dict[str, MetadataValue] | None] | None = Field(
        default=None, description="One object per document: strings, numbers, booleans."
    )
    agent: str | None = Field(
        default=None, max_length=64, description="Scope the collection to this agent."
    )


class MemoryStored(BaseModel):
    """The ids of the stored documents, in order."""

    ids: list[str]
    count: int


class MemorySearch(_Request):
    """A query in natural language, with an optional metadata filter."""

    query: str = Field(min_length=1, max_length=10_000, examples=["which bins overflow?"])
    limit: int = Field(default=5, ge=1, le=MAX_LIMIT)
    where: dict[str, Any] | None = Field(
        default=None, examples=[{"street": "Elm"}], description="Metadata filter."
    )
    agent: str | None = Field(default=None, max_length=64)


class MemoryHitPublic(BaseModel):
    """One hit: the document, its metadata and its cosine distance (smaller is closer)."""

    id: str
    text: str
    metadata: dict[str, Any]
    distance: float


class MemoryHits(BaseModel):
    """Hits, nearest first."""

    data: list[MemoryHitPublic]
    count: int


class MemoryForget(_Request):
    """What to delete: ids, or every document matching a metadata filter."""

    ids: list[str] | None = Field(default=None, min_length=1)
    where: dict[str, Any] | None = None
    agent: str | None = Field(default=None, max_length=64)


class MemoryForgotten(BaseModel):
    """How many documents were deleted."""

    forgotten: int


@router.post("/{collection}", status_code=201, response_model=MemoryStored, summary="Put")
async def put_memories(
    collection: str,
    body: MemoryPut,
    principal: CurrentPrincipal,
    kernel: KernelDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> MemoryStored:
    """Embed and store documents in the collection (created on first put). 400 for a bad
    collection name, 403 without ``write`` on ``memory:COLLECTION``."""
    ids = await kernel.memory.put_as(
        principal,
        collection,
        body.documents,
        ids=body.ids,
        metadatas=body.metadatas,
        agent=body.agent,
        idempotency_key=idempotency_key,
    )
    return MemoryStored(ids=ids, count=len(ids))


@router.post("/{collection}/search", response_model=MemoryHits, summary="Search")
async def search_memories(
    collection: str, body: MemorySearch, principal: CurrentPrincipal, kernel: KernelDep
) -> MemoryHits:
    """The documents nearest in meaning to the query (an unknown collection has none).
    403 without ``read`` on ``memory:COLLECTION``."""
    hits = await kernel.memory.search_as(
        principal, collection, body.query, limit=body.limit, where=body.where, agent=body.agent
    )
    return MemoryHits(data=[MemoryHitPublic(**h.as_dict()) for h in hits], count=len(hits))


@router.post("/{collection}/forget", response_model=MemoryForgotten, summary="Forget")
async def forget_memories(
    collection: str, body: MemoryForget, principal: CurrentPrincipal, kernel: KernelDep
) -> MemoryForgotten:
    """Delete documents by id or by metadata filter (exactly one of them). 403 without
    ``write`` on ``memory:COLLECTION``."""
    forgotten = await kernel.memory.forget_as(
        principal, collection, ids=body.ids, where=body.where, agent=body.agent
    )
    return MemoryForgotten(forgotten=forgotten)

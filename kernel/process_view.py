"""A process's current checkpoint, as operators read it (``GET /v1/processes/{pid}/state``).

The view comes from LangGraph's own ``aget_state`` on the agent's compiled graph when the
agent is still installed (values, the nodes that run next, pending interrupts), else from the
raw checkpoint tuple. Values are made JSON-ready the way process outputs are, and long
strings and lists are clipped so one huge state never floods a console or a log.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from kernos.kernel.process_records import ProcessInfo, jsonable_state

MAX_STRING = 4_000
"""Characters kept of any one string in the view (the rest is counted, not shown)."""

MAX_ITEMS = 200
"""Items kept of any one list in the view (the newest ones: conversations grow at the end)."""


def clip(value: Any, *, max_string: int = MAX_STRING, max_items: int = MAX_ITEMS) -> Any:
    """``value`` (JSON-ready) with long strings and lists shortened, saying by how much."""
    if isinstance(value, str):
        if len(value) <= max_string:
            return value
        return value[:max_string] + f"… ({len(value) - max_string} more characters)"
    if isinstance(value, list):
        kept = value[-max_items:]
        clipped = [clip(v, max_string=max_string, max_items=max_items) for v in kept]
        if len(value) > max_items:
            clipped.insert(0, f"… ({len(value) - max_items} earlier items)")
        return clipped
    if isinstance(value, dict):
        return {
            str(k): clip(v, max_string=max_string, max_items=max_items) for k, v in value.items()
        }
    return value


async def checkpoint_view(
    info: ProcessInfo, checkpointer: BaseCheckpointSaver[Any], *, graph: Any = None
) -> dict[str, Any]:
    """The current checkpoint of ``info``'s thread: ``checkpoint_id`` (``None`` before the
    first step), ``step``, ``created_at``, ``next`` nodes, ``interrupts`` and ``values``."""
    config: RunnableConfig = {"configurable": {"thread_id": info.thread_id, "checkpoint_ns": ""}}
    view: dict[str, Any] = {
        "pid": info.pid,
        "state": info.state.value,
        "thread_id": info.thread_id,
        "checkpoint_id": None,
        "step": None,
        "created_at": None,
        "next": [],
        "interrupts": [],
        "values": {},
    }
    if graph is not None:
        snapshot = await graph.aget_state(config)
        checkpoint_id = (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
        if checkpoint_id is None:
            return view
        view.update(
            checkpoint_id=checkpoint_id,
            step=(snapshot.metadata or {}).get("step"),
            created_at=snapshot.created_at,
            next=list(snapshot.next),
            interrupts=[clip(jsonable_state(i.value)) for i in snapshot.interrupts],
            values=clip(jsonable_state(snapshot.values)),
        )
        return view
    found = await checkpointer.aget_tuple(config)
    if found is None:
        return view
    view.update(
        checkpoint_id=found.checkpoint["id"],
        step=(found.metadata or {}).get("step"),
        created_at=found.checkpoint.get("ts"),
        values=clip(jsonable_state(found.checkpoint.get("channel_values", {}))),
    )
    return view


__all__ = ["MAX_ITEMS", "MAX_STRING", "checkpoint_view", "clip"]

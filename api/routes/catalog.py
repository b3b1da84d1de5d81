"""``/v1/agents``, ``/v1/tools``, ``/v1/plugins``: what this kernel can run, and who gave it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal

router = APIRouter(prefix="/v1", tags=["catalog"])


class Listing(BaseModel):
    """A list of catalog entries."""

    data: list[dict[str, Any]]
    count: int


def _listing(items: list[dict[str, Any]]) -> Listing:
    return Listing(data=items, count=len(items))


@router.get("/agents", response_model=Listing, summary="List agents")
async def list_agents(
    principal: Annotated[Principal, allowed("agent:*", "read")], kernel: KernelDep
) -> Listing:
    """Installed agents: name, version, description, tools, input schema, defaults."""
    items = []
    for spec in sorted(kernel.catalog.agents.values(), key=lambda a: a.name):
        schema = spec.input_schema.model_json_schema() if spec.input_schema else None
        items.append(
            {
                "name": spec.name,
                "version": spec.version,
                "description": spec.description,
                "tools": list(spec.tools),
                "input_schema": schema,
                "priority": spec.priority,
                "budgets": {
                    "max_tokens": spec.budgets.max_tokens,
                    "max_tool_calls": spec.budgets.max_tool_calls,
                    "max_wall_seconds": spec.budgets.max_wall_seconds,
                    "max_cost": spec.budgets.max_cost,
                },
                "plugin": spec.plugin,
            }
        )
    return _listing(items)


@router.get("/tools", response_model=Listing, summary="List tools")
async def list_tools(
    principal: Annotated[Principal, allowed("tool:*", "read")], kernel: KernelDep
) -> Listing:
    """Installed tools with the JSON schema of their arguments."""
    return _listing(
        [
            {
                "name": spec.name,
                "description": spec.description,
                "parameters": spec.json_schema(),
                "requires_approval": spec.requires_approval,
                "timeout": spec.timeout,
                "plugin": spec.plugin,
            }
            for spec in sorted(kernel.catalog.tools.values(), key=lambda t: t.name)
        ]
    )


@router.get("/plugins", response_model=Listing, summary="List plugins")
async def list_plugins(
    principal: Annotated[Principal, allowed("policy:*", "read")], kernel: KernelDep
) -> Listing:
    """Every plugin this kernel saw: status, version, hooks, what it registered."""
    return _listing([info.as_dict() for info in kernel.plugins.infos()])

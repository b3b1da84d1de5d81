"""The LLM stand-in the scheduler tests use (the LLM is the one part tests may stand in for):
an ``LLMBackend`` whose calls answer, fail or hang as a script says, or wait on gates the test
opens one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kernos.kernel.errors import BackendError
from kernos.kernel.llm import BackendConfig, ChatChunk, ChatRequest, ChatResponse, LLMBackend

Action = str | BackendError | dict[str, Any]
"""``"ok"``, ``"hang"`` (never answers), a ``BackendError`` to raise, or an assistant message."""


class StandIn(LLMBackend):
    """Answers as ``script`` says (then ``"ok"``); with ``gated``, each call waits for a gate."""

    def __init__(
        self, config: BackendConfig, *, script: list[Action] | None = None, gated: bool = False
    ) -> None:
        super().__init__(config)
        self.script: list[Action] = list(script or [])
        self.gated = gated
        self.calls: list[str] = []
        self.requests: list[ChatRequest] = []
        self.answered: list[str] = []
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.gates: list[asyncio.Future[None]] = []
        self.active = 0
        self.max_active = 0
        self.closed = False

    @staticmethod
    def tag(request: ChatRequest) -> str:
        return str(request.messages[-1]["content"])

    async def _enter(self, request: ChatRequest) -> dict[str, Any] | None:
        self.calls.append(self.tag(request))
        self.requests.append(request)
        self.tasks.append(asyncio.current_task())
        action = self.script.pop(0) if self.script else "ok"
        if isinstance(action, BackendError):
            raise action
        if action == "hang" or self.gated:
            gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.gates.append(gate)
            await gate
        return action if isinstance(action, dict) else None

    def _busy(self) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._busy()
        try:
            message = await self._enter(request)
            self.answered.append(self.tag(request))
            return ChatResponse(
                message=message or {"role": "assistant", "content": f"re: {self.tag(request)}"},
                model=self.config.model or "stand-in",
                finish_reason="tool_calls" if message and message.get("tool_calls") else "stop",
                input_tokens=10,
                output_tokens=5,
            )
        finally:
            self.active -= 1

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._busy()
        try:
            await self._enter(request)
            for word in ("one ", "two ", "three"):
                yield ChatChunk(content=word)
                await asyncio.sleep(0)
            yield ChatChunk(finish_reason="stop", input_tokens=7, output_tokens=3)
            self.answered.append(self.tag(request))
        finally:
            self.active -= 1

    async def models(self) -> list[str]:
        return [self.config.model or "stand-in"]

    async def aclose(self) -> None:
        self.closed = True

    def open_gate(self) -> bool:
        """Let the oldest waiting call answer; False when none waits."""
        for gate in self.gates:
            if not gate.done():
                gate.set_result(None)
                return True
        return False


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)

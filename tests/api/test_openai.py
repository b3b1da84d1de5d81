"""The OpenAI-compatible façade, driven by the official ``openai`` client, unmodified."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select

from kernos.kernel.storage.models import AuditRow
from kernos.kernel.tokens import read_admin_token
from tests.api.test_api import Api, api  # the fixture

__all__ = ["api"]


def client(api: Api) -> openai.AsyncOpenAI:
    token = read_admin_token(api.home)
    return openai.AsyncOpenAI(base_url=f"{api.base_url}/openai/v1", api_key=token, max_retries=0)


async def test_a_governed_agent_answers_as_a_chat_completion(api: Api) -> None:
    async with client(api) as oai:
        models = await oai.models.list()
        assert {"calc", "greeter", "asker"} <= {m.id for m in models.data}
        done = await oai.chat.completions.create(
            model="calc", messages=[{"role": "user", "content": "What is 20 + 22?"}]
        )
    assert done.choices[0].message.content == "42"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.total_tokens == 14
    async with api.kernel.db.read() as session:
        kinds = set(await session.scalars(select(AuditRow.kind).where(AuditRow.kind.is_not(None))))
    assert {"llm.chat", "tool.call"} <= kinds  # the run's model and tool calls were syscalls


async def test_streaming_yields_chunks_then_done(api: Api) -> None:
    async with client(api) as oai:
        stream = await oai.chat.completions.create(
            model="calc", messages=[{"role": "user", "content": "20 + 22?"}], stream=True
        )
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(parts) == "42"


async def test_errors_come_back_as_openai_errors(api: Api) -> None:
    async with client(api) as oai:
        with pytest.raises(openai.NotFoundError, match="no agent named 'nope'"):
            await oai.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.ConflictError, match="waiting for a human"):
            await oai.chat.completions.create(
                model="asker", messages=[{"role": "user", "content": "hi"}]
            )
    wrong = openai.AsyncOpenAI(
        base_url=f"{api.base_url}/openai/v1", api_key="not-a-key", max_retries=0
    )
    async with wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()

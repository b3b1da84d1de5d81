"""Governed LangChain tools and chat models: ordinary LangGraph code, every call a syscall.

The kernel hands an agent's graph factory ``KernelTool``s and a ``KernelChatModel``. When the
graph calls them, they find their process through LangGraph's run config (the kernel puts a
``ProcessContext`` under ``configurable["kernos"]``), derive the syscall's deterministic key
from the LangGraph task running them, and send the call through the kernel's pipeline.
``ask_human`` does the same for a question to a person.

Syscall keys are ``{pid}/{checkpoint_ns}/{call id}``: the checkpoint namespace names the
LangGraph task (node and task id), and the call id is the model's tool-call id when there is
one, otherwise the call's position within this run of the task. Both are the same when a step
runs again after a crash or an interrupt, which is what makes replay find the journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    message_chunk_to_message,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, create_model

from kernos.kernel.catalog import ToolSpec
from kernos.kernel.errors import BackendUnavailable, BudgetExceeded, KernosError, PolicyDenied
from kernos.kernel.events.topics import check_not_reserved
from kernos.kernel.llm import ChatResponse
from kernos.kernel.llm_bridge import ai_message, chat_request, message_chunk
from kernos.kernel.scheduling import LLMScheduler
from kernos.kernel.syscalls import (
    LLM_ACCOUNTED,
    LLM_MAX_TOKENS,
    LLM_TOKEN_ALLOWANCE,
    ProcessRef,
    Syscall,
    SyscallKind,
    SyscallResult,
    Usage,
)

if TYPE_CHECKING:
    from kernos.kernel.identity import Principal
    from kernos.kernel.memory import MemoryService
    from kernos.kernel.model_runtime import ModelRuntime
    from kernos.kernel.syscalls import Pipeline

CONFIG_KEY = "kernos"
"""Key of the ``ProcessContext`` in a LangGraph run's ``configurable``."""

_SCRATCHPAD = "__pregel_scratchpad"  # langgraph._internal._constants.CONFIG_KEY_SCRATCHPAD
IDEMPOTENCY_PARAM = "idempotency_key"
"""A tool function with a parameter of this name receives the syscall key in it."""

_current_syscall: ContextVar[Syscall | None] = ContextVar("kernos_current_syscall", default=None)
_current_context: ContextVar[ProcessContext | None] = ContextVar(
    "kernos_current_context", default=None
)
_tool_call_id: ContextVar[str | None] = ContextVar("kernos_tool_call_id", default=None)


Emitter = Callable[..., Awaitable[Any]]
"""Publishes an event for a process: ``await emit(topic, data, event_id=...)``."""
ChildSpawner = Callable[..., Awaitable[Any]]
"""Spawns a child: ``await spawn(agent, input, parent=ProcessRef, idempotency_key=...)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessContext:
    """What governed tools and models need to find their process and the kernel."""

    process: ProcessRef
    pipeline: Pipeline
    emit: Emitter | None = None
    spawn: ChildSpawner | None = None
    memory: MemoryService | None = None
    """The kernel's long-term memory (``kernos.kernel.memory.memory_search`` and friends)."""
    processes: ProcessControl | None = None
    """The process table, for tools that act on other processes (the operator agent's): every
    action is authorized for this process's owner, so an agent never does more than the
    person who started it may."""
    models: ModelRuntime | None = None
    """Registered ONNX models, served with the registry's canary and shadow rules."""


class ProcessControl(Protocol):
    """What tools may do with the process table (the kernel's ``ProcessManager``)."""

    async def authorize(self, principal: Principal, obj: str, action: str) -> None:
        """Raise ``PolicyDenied`` unless ``principal`` may do ``action`` on ``obj``."""

    async def authorize_process(self, process: ProcessRef, obj: str, action: str) -> None:
        """Raise ``PolicyDenied`` unless ``process`` may do ``action`` on ``obj``: its owner,
        its agent and the processes above it, as the pipeline asks for a syscall."""

    async def list_processes(
        self,
        *,
        tenant: str | None = None,
        states: Iterable[Any] | None = None,
        agent: str | None = None,
        owner: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """Processes, newest first (``ProcessInfo`` records)."""

    async def get(self, pid: int, *, tenant: str | None = None) -> Any:
        """One process (``NotFound`` if missing or another tenant's)."""

    async def signal(
        self, pid: int, signal: Any, *, tenant: str | None = None, by: Principal | None = None
    ) -> Any:
        """Suspend, resume or kill ``pid``, authorized for ``by``."""


def current_syscall() -> Syscall | None:
    """The syscall whose executor is running (tools can read its ``key``), if any."""
    return _current_syscall.get()


def current_process_context() -> ProcessContext:
    """The ``ProcessContext`` of the process whose tool is running (inside a ``KernelTool``'s
    function); ``KernosError`` anywhere else."""
    context = _current_context.get()
    if context is None:
        raise KernosError(
            "current_process_context() is only available inside a governed tool's function"
        )
    return context


def process_context(config: RunnableConfig | None = None) -> ProcessContext:
    """The ``ProcessContext`` of the LangGraph run calling us; ``KernosError`` outside one."""
    config = config if config is not None else ensure_config()
    context = (config.get("configurable") or {}).get(CONFIG_KEY)
    if not isinstance(context, ProcessContext):
        raise KernosError(
            "a governed tool or model was called outside a Kernos process; "
            "spawn the agent through the kernel (kernos run AGENT)"
        )
    return context


def syscall_key(config: RunnableConfig, pid: int, *, call_id: str | None = None) -> str:
    """The deterministic key of a syscall made from the LangGraph task running ``config``."""
    configurable = config.get("configurable") or {}
    namespace = configurable.get("checkpoint_ns") or "root"
    if call_id is None:
        scratchpad = configurable.get(_SCRATCHPAD)
        if scratchpad is None:
            raise KernosError("cannot key a syscall made outside a LangGraph task")
        # The task execution's own call counter (LangGraph's functional API numbers its
        # sub-task calls with it too): it restarts with every run of the task and counts in
        # program order, so a re-run of the same code yields the same keys.
        call_id = f"#{scratchpad.call_counter()}"
    return f"{pid}/{namespace}/{call_id}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return message_to_dict(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def args_model(spec: ToolSpec) -> type[BaseModel]:
    """The pydantic model of a tool's arguments: its ``args_schema``, or one inferred from the
    function's signature (the idempotency-key parameter left out)."""
    if spec.args_schema is not None:
        return spec.args_schema
    params = {
        name: (
            param.annotation if param.annotation is not inspect.Parameter.empty else Any,
            ... if param.default is inspect.Parameter.empty else param.default,
        )
        for name, param in inspect.signature(spec.func).parameters.items()
        if name != IDEMPOTENCY_PARAM and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    }
    model: type[BaseModel] = create_model(f"{spec.name}_args", **params)  # type: ignore[call-overload]
    return model


class KernelTool(BaseTool):
    """A plugin's tool, governed: each invocation is a ``tool.call`` syscall.

    Policy denials come back to the model as the tool's error text (it can change course);
    an exhausted budget stops the process.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # Typed loosely for pydantic: ToolSpec is a plain dataclass, not a model to validate.
    spec: Any = Field(exclude=True)
    requires_approval: bool = False
    timeout: float | None = None
    handle_tool_error: bool = True

    @classmethod
    def from_spec(cls, spec: ToolSpec) -> KernelTool:
        """Wrap a registered ``ToolSpec``."""
        return cls(
            name=spec.name,
            description=spec.description,
            args_schema=args_model(spec),
            spec=spec,
            requires_approval=spec.requires_approval,
            timeout=spec.timeout,
        )

    async def ainvoke(
        self, input: str | dict[str, Any] | Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        """Remember the model's tool-call id (it keys the syscall) and run the tool."""
        call_id = None
        if isinstance(input, dict) and input.get("type") == "tool_call":
            call_id = input.get("id")
        token = _tool_call_id.set(call_id)
        try:
            return await super().ainvoke(input, config, **kwargs)
        finally:
            _tool_call_id.reset(token)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Kernos tools are async: use ainvoke / astream")

    async def _arun(self, *args: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        kwargs.pop("run_manager", None)
        context = process_context(config)
        key = syscall_key(config, context.process.pid, call_id=_tool_call_id.get())
        spec: ToolSpec = self.spec
        arguments = dict(kwargs)

        async def execute(call: Syscall) -> SyscallResult:
            token = _current_syscall.set(call)
            context_token = _current_context.set(context)
            try:
                call_kwargs = dict(arguments)
                if IDEMPOTENCY_PARAM in inspect.signature(spec.func).parameters:
                    call_kwargs[IDEMPOTENCY_PARAM] = call.key
                if inspect.iscoroutinefunction(spec.func):
                    value = await spec.func(**call_kwargs)
                else:
                    value = await asyncio.to_thread(spec.func, **call_kwargs)
            finally:
                _current_context.reset(context_token)
                _current_syscall.reset(token)
            return SyscallResult(value=_jsonable(value), usage=Usage(tool_calls=1))

        call = Syscall(
            key=key,
            kind=SyscallKind.TOOL_CALL,
            target=spec.name,
            args=_jsonable(arguments),
            process=context.process,
            executor=execute,
            requires_approval=self.requires_approval,
            question=f"Allow {spec.name} with {_jsonable(arguments)}?",
        )
        if self.timeout is not None:
            call.attributes["timeout"] = self.timeout
        try:
            result = await context.pipeline.run(call)
        except BudgetExceeded:
            raise
        except PolicyDenied as exc:
            raise ToolException(f"denied: {exc}") from exc
        return result.value


class KernelChatModel(BaseChatModel):
    """A chat model, governed: each generation is an ``llm.chat`` syscall.

    Behind the syscall, either the LLM scheduler (``scheduler`` and ``backend`` set: the
    request goes to that backend or its fallbacks with the process's priority, tenant and pid,
    and the answer's tokens and cost are charged to the process) or ``inner``, any LangChain
    chat model (scripted fakes in tests). On the scheduler path ``max_tokens`` (or a
    ``max_tokens=`` call argument) is checked against the process's token budget before the
    request is sent; without one, the reply is held to what the budget has left. With
    ``streaming``, replies are streamed from the backend and each chunk reaches LangChain
    callbacks (LangGraph's ``stream_mode="messages"``) as it arrives; the journal still
    records the whole message once.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Runnable[Any, Any] | None = None
    model_name: str = "default"
    bound_tools: list[Any] = Field(default_factory=list)
    tool_choice: Any = None
    scheduler: LLMScheduler | None = Field(default=None, exclude=True)
    backend: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return "kernos"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: sent with each request on the scheduler path, bound on the inner model
        otherwise (models that can't bind, such as scripted fakes, ignore them)."""
        inner: Runnable[Any, Any] | None = self.inner
        try:
            bind: Callable[..., Runnable[Any, Any]] = self.inner.bind_tools  # type: ignore[union-attr]
            extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
            inner = bind(tools, **extra, **kwargs)
        except (AttributeError, NotImplementedError):
            pass
        return self.model_copy(
            update={"inner": inner, "bound_tools": list(tools), "tool_choice": tool_choice}
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("Kernos models are async: use ainvoke / astream")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = ensure_config()
        context = process_context(config)
        key = syscall_key(config, context.process.pid)
        inner = self.inner
        attributes: dict[str, Any] = {LLM_MESSAGES: list(messages)}
        if self.scheduler is not None:
            wanted = kwargs.get("max_tokens", self.max_tokens)
            if wanted is not None:
                attributes[LLM_MAX_TOKENS] = int(wanted)

            async def execute(call: Syscall) -> SyscallResult:
                return await self._scheduled(call, messages, stop, run_manager)
        elif inner is None:
            raise BackendUnavailable(
                "this chat model has neither an LLM scheduler backend nor an inner model"
            )
        else:

            async def execute(call: Syscall) -> SyscallResult:
                return await _inner_call(inner, call, messages, stop, kwargs)

        call = Syscall(
            key=key,
            kind=SyscallKind.LLM_CHAT,
            target=self.model_name,
            args={"messages": len(messages)},
            process=context.process,
            executor=execute,
            attributes=attributes,
        )
        result = await context.pipeline.run(call)
        [message] = messages_from_dict([result.value])
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _scheduled(
        self,
        call: Syscall,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
    ) -> SyscallResult:
        """Send the call through the LLM scheduler; the answer and its usage and cost."""
        scheduler, backend = self.scheduler, self.backend or "default"
        assert scheduler is not None
        sent = call.attributes.get(LLM_MESSAGES, messages)
        max_tokens = call.attributes.get(LLM_MAX_TOKENS, call.attributes.get(LLM_TOKEN_ALLOWANCE))
        request = chat_request(
            sent,
            tools=self.bound_tools,
            tool_choice=self.tool_choice,
            stop=stop,
            max_tokens=max_tokens,
            temperature=self.temperature,
        )
        process = call.process
        where: dict[str, Any] = {
            "backend": backend,
            "priority": process.priority,
            "tenant": process.tenant,
            "pid": process.pid,
        }
        if self.streaming and run_manager is not None:
            message_id = f"run-{run_manager.run_id}"
            total: AIMessageChunk | None = None
            async for piece in scheduler.stream(request, **where):
                chunk = message_chunk(piece, message_id=message_id)
                await run_manager.on_llm_new_token(
                    piece.content, chunk=ChatGenerationChunk(message=chunk)
                )
                total = chunk if total is None else total + chunk
            reply: BaseMessage = message_chunk_to_message(total or AIMessageChunk(content=""))
            meta = getattr(reply, "usage_metadata", None) or {}
            input_tokens = int(meta.get("input_tokens", 0))
            output_tokens = int(meta.get("output_tokens", 0))
            # A stream does not say which backend of the chain served it: priced as the first.
            cost = scheduler.cost(
                ChatResponse(
                    message={},
                    model="",
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    backend=backend,
                )
            )
        else:
            response = await scheduler.chat(request, **where)
            reply = ai_message(response)
            input_tokens, output_tokens = response.input_tokens, response.output_tokens
            cost = scheduler.cost(response)
        call.attributes[LLM_ACCOUNTED] = True
        usage = Usage(
            llm_calls=1, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost
        )
        return SyscallResult(value=message_to_dict(reply), usage=usage)


async def _inner_call(
    inner: Runnable[Any, Any],
    call: Syscall,
    messages: list[BaseMessage],
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> SyscallResult:
    """Answer through a LangChain chat model (the path without the scheduler)."""
    # What stages left of the messages (the redaction guard replaces secrets).
    sent = call.attributes.get(LLM_MESSAGES, messages)
    reply = await inner.ainvoke(sent, stop=stop, **kwargs)
    if not isinstance(reply, BaseMessage):
        reply = AIMessage(content=str(reply))
    usage = Usage(llm_calls=1)
    meta = getattr(reply, "usage_metadata", None) or {}
    usage.input_tokens = int(meta.get("input_tokens", 0))
    usage.output_tokens = int(meta.get("output_tokens", 0))
    return SyscallResult(value=message_to_dict(reply), usage=usage)


LLM_MESSAGES = "messages"
"""``Syscall.attributes`` key of an ``llm.chat`` call's messages: what the backend receives,
after the stages (the redaction guard) had their say."""


async def ask_human(question: str, *, required_role: str | None = None) -> Any:
    """Ask a person from inside a graph node; returns their answer.

    The process waits (``waiting(human)``) with an approval record until an operator answers;
    the answer resumes the graph, and this call returns it.
    """
    config = ensure_config()
    context = process_context(config)
    key = syscall_key(config, context.process.pid)

    async def execute(call: Syscall) -> SyscallResult:
        return SyscallResult(value=_jsonable(call.attributes.get("answer")))

    call = Syscall(
        key=key,
        kind=SyscallKind.HUMAN_ASK,
        target="human",
        args={"question": question},
        process=context.process,
        executor=execute,
        question=question,
        required_role=required_role,
    )
    result = await context.pipeline.run(call)
    return result.value


async def emit_event(topic: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
    """Publish an event from inside a graph node (an ``event.emit`` syscall); returns its id.

    Without ``event_id`` the id is derived from the syscall key, so a step that runs again
    after a crash publishes the same event, which the bus then ignores as a duplicate.
    """
    check_not_reserved(topic, event_id)
    config = ensure_config()
    context = process_context(config)
    key = syscall_key(config, context.process.pid)
    emit = context.emit
    if emit is None:
        raise KernosError("this kernel has no event bus")

    async def execute(call: Syscall) -> SyscallResult:
        chosen = event_id or "evt-" + hashlib.sha256(call.key.encode()).hexdigest()[:32]
        await emit(topic, data, event_id=chosen, process=call.process)
        return SyscallResult(value={"event_id": chosen})

    call = Syscall(
        key=key,
        kind=SyscallKind.EVENT_EMIT,
        target=topic,
        args={"topic": topic, "data": _jsonable(data)},
        process=context.process,
        executor=execute,
    )
    result = await context.pipeline.run(call)
    return str(result.value["event_id"])


async def spawn_child(agent: str, input: dict[str, Any] | None = None) -> int:
    """Start a child process from inside a graph node (a ``process.spawn`` syscall).

    Returns the child's pid. The child runs as this process's owner; killing this process
    kills it. A step that runs again after a crash gets the same child back, not a second.
    """
    config = ensure_config()
    context = process_context(config)
    key = syscall_key(config, context.process.pid)
    spawn = context.spawn
    if spawn is None:
        raise KernosError("this kernel cannot spawn processes from a process")

    async def execute(call: Syscall) -> SyscallResult:
        info = await spawn(agent, input or {}, parent=call.process, idempotency_key=call.key)
        return SyscallResult(value={"pid": info.pid})

    call = Syscall(
        key=key,
        kind=SyscallKind.PROCESS_SPAWN,
        target=agent,
        args={"agent": agent, "input": _jsonable(input or {})},
        process=context.process,
        executor=execute,
    )
    result = await context.pipeline.run(call)
    return int(result.value["pid"])

"""Chat slash commands: ``/ps``, ``/spawn AGENT``, ``/kill PID``, ``/approve ID``, ``/deny ID``,
``/help``. They work with or without an LLM backend; each is one API call (or two).

``run_slash`` returns the reply as plain text lines; errors are ``KernosError``s (a bad
command is ``InvalidInput``) for the chat to show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernos.kernel.errors import InvalidInput, NotFound
from kernos.tui.client import ConsoleClient
from kernos.tui.formatting import age, short_id, state_text


@dataclass(frozen=True, slots=True)
class SlashCommand:
    """A slash command: its name, argument synopsis and one-line help."""

    name: str
    args: str
    help: str

    @property
    def usage(self) -> str:
        """``/name ARGS``."""
        return f"/{self.name} {self.args}".rstrip()


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("ps", "", "list processes (newest first)"),
    SlashCommand("spawn", "AGENT [JSON]", "start a run of AGENT with an optional JSON input"),
    SlashCommand("kill", "PID", "kill a process and its children"),
    SlashCommand("approve", "ID [COMMENT]", "approve a pending approval (an id prefix will do)"),
    SlashCommand("deny", "ID [COMMENT]", "deny a pending approval (an id prefix will do)"),
    SlashCommand("help", "", "this list"),
)
"""Every slash command, in the order ``/help`` lists them."""

NO_LLM_MESSAGE = (
    "Free text goes to the operator agent, which needs an LLM backend, and none is "
    "configured for this console. Set KERNOS_LLM_BASE_URL and KERNOS_LLM_MODEL (or add "
    "[[llm_backends]] to KERNOS_HOME/kernos.toml) and restart the kernel. Slash commands "
    "work meanwhile: /help lists them."
)
"""The reply to free text when no LLM backend is configured."""


def help_lines() -> list[str]:
    """``/help``'s answer."""
    width = max(len(c.usage) for c in COMMANDS)
    return [f"{c.usage.ljust(width)}  {c.help}" for c in COMMANDS]


def completions(text: str, *, agents: list[str], approvals: list[str]) -> list[str]:
    """Whole-line completions of ``text``: command names, then agent names after ``/spawn``
    and pending approval ids after ``/approve`` and ``/deny``."""
    if not text.startswith("/"):
        return []
    head, space, rest = text.partition(" ")
    if not space:
        return [f"/{c.name}" for c in COMMANDS if f"/{c.name}".startswith(head)]
    choices = {"/spawn": agents, "/approve": approvals, "/deny": approvals}.get(head, [])
    return [f"{head} {choice}" for choice in choices if choice.startswith(rest)]


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{text!r} is not a pid: /kill takes a process id, e.g. /kill 12")
    return int(text)


async def _approval_id(client: ConsoleClient, prefix: str) -> str:
    pending = [a["id"] for a in await client.approvals() if str(a["id"]).startswith(prefix)]
    if not pending:
        raise NotFound(f"no pending approval's id starts with {prefix!r}")
    if len(pending) > 1:
        raise InvalidInput(f"{prefix!r} names {len(pending)} pending approvals; type more of it")
    return str(pending[0])


async def run_slash(client: ConsoleClient, text: str, *, now: datetime) -> list[str]:
    """Run one slash command line and return the reply's lines."""
    name, _, rest = text.strip().removeprefix("/").partition(" ")
    rest = rest.strip()
    if name == "help":
        return help_lines()
    if name == "ps":
        found = await client.processes(limit=20)
        if not found:
            return ["no processes"]
        return [
            f"{p['pid']:>5}  {p['agent']:<16} {state_text(p):<16} {age(p['created_at'], now)}"
            for p in found
        ]
    if name == "spawn":
        agent, _, raw = rest.partition(" ")
        if not agent:
            raise InvalidInput("/spawn needs an agent: /spawn AGENT [JSON input]")
        given: Any = {}
        if raw.strip():
            try:
                given = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"the input is not JSON ({exc.msg})") from None
            if not isinstance(given, dict):
                raise InvalidInput("the input must be a JSON object")
        process = await client.run(agent, given)
        return [f"started pid {process['pid']} ({process['agent']}): {state_text(process)}"]
    if name == "kill":
        process = await client.signal(_pid(rest), "kill")
        return [f"pid {process['pid']} ({process['agent']}): {state_text(process)}"]
    if name in ("approve", "deny"):
        prefix, _, comment = rest.partition(" ")
        if not prefix:
            raise InvalidInput(f"/{name} needs an approval id: /{name} ID [comment]")
        approval_id = await _approval_id(client, prefix)
        decided = await client.decide(
            approval_id, approved=name == "approve", comment=comment.strip() or None
        )
        return [f"approval {short_id(approval_id)} {decided['status']} (pid {decided['pid']})"]
    raise InvalidInput(f"unknown command /{name}: /help lists the commands")

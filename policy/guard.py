"""The redaction guard stage: secrets and personal data never reach an LLM backend.

It sits just before ``execute`` and rewrites the messages of every ``llm.chat`` call: each
text part goes through the redactor, and what it replaced is stored in the vault (so an
authorized operator can reveal it, audited). Tool calls are left alone: a tool acts on real
values (it must be able to send the e-mail); only what leaves for a model is redacted. The
audit log redacts on its own, in the audit sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage
from sqlalchemy.orm import Session

from kernos.kernel.governed import LLM_MESSAGES
from kernos.kernel.syscalls import Proceed, Stage, Syscall, SyscallKind, SyscallResult

if TYPE_CHECKING:
    from kernos.kernel.storage.database import Database
    from kernos.policy.redaction import Redactor
    from kernos.policy.vault import Vault, VaultEntry


class GuardStage(Stage):
    """Redacts what an ``llm.chat`` call sends to the backend."""

    name = "guard"

    def __init__(self, redactor: Redactor, vault: Vault, db: Database) -> None:
        self._redactor = redactor
        self._vault = vault
        self._db = db

    async def handle(self, call: Syscall, proceed: Proceed) -> SyscallResult:
        messages = call.attributes.get(LLM_MESSAGES)
        if call.kind is not SyscallKind.LLM_CHAT or not messages:
            return await proceed(call)
        entries: list[VaultEntry] = []
        call.attributes[LLM_MESSAGES] = [
            self._message(m, call.process.tenant, entries) for m in messages
        ]
        if entries:
            vault = self._vault

            def store(session: Session) -> None:
                vault.store(session, entries)

            await self._db.write(store)  # before the backend sees a token it could echo
        return await proceed(call)

    def _message(self, message: Any, tenant: str, entries: list[VaultEntry]) -> Any:
        if not isinstance(message, BaseMessage):
            return message
        result = self._redactor.redact(message.content, tenant=tenant)
        entries.extend(result.entries)
        if result.value == message.content:
            return message
        return message.model_copy(update={"content": result.value})

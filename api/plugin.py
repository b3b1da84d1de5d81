"""Built-in plugin that gives a kernel its HTTP API.

``on_startup`` makes sure the local admin token exists (every kernel start, so ``kernos init``
creates it too) and, when the kernel was asked to serve (``kernos up``, ``kernos serve``),
starts uvicorn on ``KERNOS_API_HOST:KERNOS_API_PORT``; ``on_shutdown`` stops it. FastAPI and
uvicorn (and the kernel's storage layer) are imported only then, so loading this plugin for
``kernos --help`` stays cheap.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.api.hitl import HitlNotifier
    from kernos.api.server import ApiServer
    from kernos.api.webhooks import WebhookNotifier
    from kernos.kernel.kernel import Kernel

_servers: WeakKeyDictionary[Kernel, ApiServer] = WeakKeyDictionary()
_notifiers: WeakKeyDictionary[Kernel, WebhookNotifier] = WeakKeyDictionary()
_hitl: WeakKeyDictionary[Kernel, HitlNotifier] = WeakKeyDictionary()


def api_server(kernel: Kernel) -> ApiServer | None:
    """The API server of ``kernel``, if it serves one."""
    return _servers.get(kernel)


def webhook_notifier(kernel: Kernel) -> WebhookNotifier:
    """The webhook notifier of a started ``kernel``."""
    return _notifiers[kernel]


@hookimpl
async def on_startup(kernel: Kernel) -> None:
    """Create the admin token if missing, deliver run webhooks (whether or not this kernel
    serves: deliveries left pending by a serving kernel go on), and serve the API if the
    kernel was asked to."""
    from kernos.api.hitl import HitlNotifier
    from kernos.api.webhooks import WebhookNotifier
    from kernos.kernel.tokens import ensure_admin_token

    token = await asyncio.to_thread(ensure_admin_token, kernel.settings.home)
    notifier = await asyncio.to_thread(WebhookNotifier, kernel)
    notifier.install()
    _notifiers[kernel] = notifier
    hitl = await asyncio.to_thread(HitlNotifier, kernel)
    hitl.install()  # approval notifications to the answering role's webhook, if configured
    _hitl[kernel] = hitl
    if not kernel.serve_api:
        return
    from kernos.api.app import create_app
    from kernos.api.server import ApiServer

    settings = kernel.settings
    server = ApiServer(
        create_app(kernel, authenticators=[token]),
        host=settings.api_host,
        port=settings.api_port,
        tls_cert=settings.api_tls_cert,
        tls_key=settings.api_tls_key,
    )
    await server.start()
    _servers[kernel] = server


@hookimpl
async def on_shutdown(kernel: Kernel) -> None:
    """Stop the API server, if this kernel runs one."""
    server = _servers.pop(kernel, None)
    if server is not None:
        await server.stop()
    notifier = _notifiers.pop(kernel, None)
    if notifier is not None:
        await notifier.aclose()
    hitl = _hitl.pop(kernel, None)
    if hitl is not None:
        await hitl.aclose()

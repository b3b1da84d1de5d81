"""The ``vllm`` backend kind: vLLM's OpenAI-compatible server (``vllm serve``).

Everything ``openai_compat`` does (chat, streaming, tool calls, ``response_format``), plus:

* ``health()`` reads ``GET /health`` at the server's root;
* ``load()`` reads vLLM's Prometheus ``GET /metrics`` into a ``BackendLoad`` for the scheduler:
  ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (summed over engines),
  ``vllm:kv_cache_usage_perc`` (vLLM's V1 engine, 0.10 and later; ``vllm:gpu_cache_usage_perc``
  on older servers; the fullest engine's);
* guided decoding through ``extra_body``, in the server's dialect: vLLM 0.12 and later take
  ``{"structured_outputs": {"json"|"regex"|"choice"|"grammar": ...}}``, older servers
  ``guided_json`` and friends. Callers may send either form; ``options.guided = "legacy"``
  selects the old field names for the server, the default the new ones.

Metric and field names as of vLLM 0.12 (docs: "Production Metrics", "Structured Outputs").
In-process serving through vLLM's ``AsyncLLMEngine`` (the ``vllm`` extra on a GPU machine) is
not here yet: configure a ``vllm serve`` server instead.
"""

from __future__ import annotations

from typing import Any

from kernos.kernel.errors import ConfigError
from kernos.kernel.llm import BackendConfig, BackendError, BackendLoad, ChatRequest
from kernos.plugins.openai_compat import OpenAICompatBackend

KIND = "vllm"

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
"""KV-cache use, newest name first (V1 engine; V0's name was removed in vLLM 0.11)."""

GUIDED_FIELDS = {
    "json": "guided_json",
    "regex": "guided_regex",
    "choice": "guided_choice",
    "grammar": "guided_grammar",
    "whitespace_pattern": "guided_whitespace_pattern",
    "structural_tag": "structural_tag",
}
"""``structured_outputs`` keys and the pre-0.12 top-level fields they replaced."""


def parse_metrics(text: str) -> BackendLoad:
    """vLLM's Prometheus text exposition as a ``BackendLoad`` (``None`` for absent metrics).

    Raises ``ValueError`` when the text is not Prometheus exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, []).append(float(sample.value))
    running = values.get(RUNNING)
    waiting = values.get(WAITING)
    kv = next((values[name] for name in KV_CACHE if name in values), None)
    return BackendLoad(
        running=None if running is None else int(sum(running)),
        waiting=None if waiting is None else int(sum(waiting)),
        kv_cache_usage=None if kv is None else max(kv),
    )


def guided_fields(extra_body: dict[str, Any], *, legacy: bool) -> dict[str, Any]:
    """``extra_body`` with its guided-decoding fields in one dialect: ``structured_outputs``
    (vLLM ≥ 0.12) or, with ``legacy``, the ``guided_*`` fields. Other fields stay as they are."""
    body = dict(extra_body)
    if legacy:
        structured = body.pop("structured_outputs", None)
        if isinstance(structured, dict):
            for key, value in structured.items():
                name = str(key)
                body[GUIDED_FIELDS.get(name, name)] = value
        return body
    structured = dict(body.pop("structured_outputs", None) or {})
    for key, old in GUIDED_FIELDS.items():
        if old in body:
            structured.setdefault(key, body.pop(old))
    body.pop("guided_decoding_backend", None)  # removed in 0.12; the server picks
    if structured:
        body["structured_outputs"] = structured
    return body


class VLLMBackend(OpenAICompatBackend):
    """A ``vllm serve`` server: the OpenAI-compatible client plus health, load and guided
    decoding in the server's dialect."""

    def __init__(self, config: BackendConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        guided = config.options.get("guided", "structured_outputs")
        if guided not in ("structured_outputs", "legacy"):
            raise ConfigError(
                f"backend {config.name!r}: options.guided must be 'structured_outputs' "
                f"(vLLM 0.12 and later) or 'legacy' (guided_json and friends), got {guided!r}"
            )
        self._legacy = guided == "legacy"

    async def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The OpenAI body, with guided-decoding fields in this server's dialect."""
        body = await super().request_body(request, stream=stream)
        return guided_fields(body, legacy=self._legacy)

    async def health(self) -> None:
        """``GET /health`` at the server's root answers 200; raises ``BackendError``."""
        import httpx

        url = f"{self.server_root}/health"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code != 200:
            raise self._status_error(response)

    async def load(self) -> BackendLoad | None:
        """The server's ``/metrics``: running and waiting requests, KV-cache use.

        ``None`` when the server publishes no metrics (404); raises ``BackendError`` when it
        cannot be reached or answers something else.
        """
        import httpx

        url = f"{self.server_root}/metrics"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._status_error(response)
        try:
            return parse_metrics(response.text)
        except ValueError as exc:
            raise BackendError(
                f"backend {self.name!r}: /metrics is not Prometheus text ({exc}); not retryable",
                retryable=False,
            ) from None

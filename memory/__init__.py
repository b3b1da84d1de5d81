"""Long-term semantic memory: ChromaDB stores and offline embeddings, as a built-in plugin.

The kernel defines the interfaces (``kernos.kernel.memory``); this package implements them:
``chroma`` (embedded ``PersistentClient`` in ``KERNOS_HOME/memory`` or a Chroma server),
``minilm`` (all-MiniLM-L6-v2 on onnxruntime, never downloading anything) and ``openai`` (any
OpenAI-compatible ``/v1/embeddings`` server). Retention and context management come later.
"""

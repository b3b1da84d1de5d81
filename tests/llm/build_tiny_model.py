"""Build a tiny random-weight chat model for ``transformers serve``, with no download.

Run with the ``.venv-llm`` interpreter (it needs torch and transformers)::

    .venv-llm/bin/python tests/llm/build_tiny_model.py DIR

A byte-level BPE tokenizer trained on a few sentences, wrapped with a chat template, and a
two-layer ``LlamaForCausalLM`` with seeded random weights: the text is nonsense, but tokens,
usage counts, streaming, latency and batching are real. Idempotent: a folder that already
holds a model of this recipe's version is left alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RECIPE = "kernos-tiny-llama-3"
"""Bump when the recipe changes, so cached folders are rebuilt."""

SEED = 1234

CORPUS = [
    "The kernel schedules agents and their calls to language models.",
    "Trucks empty the bins on the route the dispatcher planned this morning.",
    "A sensor reported that the bin on Main Street is nearly full.",
    "Operators approve or deny what an agent proposes to do.",
    "Every syscall is authorized, journaled and audited before it runs.",
    "hello world, the quick brown fox jumps over the lazy dog 0123456789",
    "Tools: get_weather, solve_routes, dispatch_trucks. Arguments are JSON objects.",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SPECIAL = ["<|bos|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]


def _plain(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable()


def build(target: Path) -> None:
    """Write tokenizer, config and weights into ``target``."""
    marker = target / "kernos-recipe.json"
    if marker.exists() and json.loads(marker.read_text()).get("recipe") == RECIPE:
        return
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(SEED)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Greedy decoding over random weights, restricted to tokens that decode to plain ASCII on
    # their own: answers are visible text that streams byte-for-byte like the whole answer,
    # and never hold the end token, so they run to max_tokens (what tests and timings want).
    # The special tokens' output rows are zeroed as well, for servers that ignore
    # suppress_tokens.
    with torch.no_grad():
        model.lm_head.weight[: len(SPECIAL)] = 0.0
    model.generation_config.do_sample = False
    model.generation_config.suppress_tokens = [
        token_id for token_id in range(len(fast)) if not _plain(fast.decode([token_id]))
    ] + list(range(len(SPECIAL)))
    target.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(target)
    model.save_pretrained(target)
    marker.write_text(json.dumps({"recipe": RECIPE, "seed": SEED}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: build_tiny_model.py DIR")
    build(Path(sys.argv[1]).absolute())

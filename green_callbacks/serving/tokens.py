"""Energy per prompt token and per generated token of a Hugging Face causal language model.

For each batch size, two workloads take turns in rounds (so a drift in the
machine's load hits both alike, as in :func:`~green_callbacks.compress.compare_inference`):

- *prefill*: one forward pass over the prompts;
- *generate*: ``model.generate`` of exactly ``new_tokens`` tokens (greedy, no
  early end), whose first token comes from that same prefill pass.

So a prompt token costs prefill / (batch x prompt length), and a generated
token, decoded one step at a time against the cache, costs (generate -
prefill) / (batch x (new tokens - 1)). Prompts are random token ids: the
compute does not depend on the text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from green_callbacks.compress.measure import compare_inference
from green_callbacks.core.memory import refuse_unless_fits
from green_callbacks.serving.stream import ServingConfigError


@dataclass(frozen=True)
class TokenCost:
    """One batch size's figures.

    Attributes:
        batch_size: prompts per call.
        prompt_tokens: tokens per prompt.
        new_tokens: tokens generated per prompt.
        j_per_prompt_token: prefill energy per prompt token. Units: J.
        j_per_generated_token: decode energy per generated token (after the first). Units: J.
        j_per_request: one prompt's whole generation. Units: J.
        s_per_generated_token: decode time per generated token, per sequence. Units: s.
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``.
        energy_source: the meters, as ``domain=label`` pairs.
    """

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    j_per_prompt_token: float
    j_per_generated_token: float
    j_per_request: float
    s_per_generated_token: float
    energy_kind: str
    energy_source: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


def generation_bytes(config: Any, batch: int, tokens: int) -> float:
    """An estimate of the memory generating ``tokens`` at ``batch`` takes (float32). Units: B.

    The key-value cache (two tensors of ``tokens x width`` per layer and
    sequence), one layer's attention scores (``heads x tokens^2`` per
    sequence) and the hidden states around them; figures a config does not
    give count as GPT-2 small's (768 wide, 12 layers, 12 heads).

    Example:
        >>> from types import SimpleNamespace
        >>> f"{generation_bytes(SimpleNamespace(n_embd=128, n_layer=2, n_head=4), 16, 64):.3g}"
        '7.34e+06'
    """

    def figure(*names: str, default: int) -> int:
        found = (getattr(config, n, None) for n in names)
        return next((int(v) for v in found if isinstance(v, int) and v > 0), default)

    width = figure("n_embd", "hidden_size", "d_model", default=768)
    layers = figure("n_layer", "num_hidden_layers", "num_layers", default=12)
    heads = figure("n_head", "num_attention_heads", default=12)
    per_sequence = 2 * layers * tokens * width + heads * tokens**2 + 8 * tokens * width
    return 4.0 * batch * per_sequence


def token_energy(
    model: Any,
    *,
    prompt_tokens: int = 32,
    new_tokens: int = 32,
    batch_sizes: Sequence[int] = (1, 4, 16),
    meters: Any = "auto",
    rounds: int = 3,
    min_round_s: float = 0.5,
    seed: int = 0,
    progress: TextIO | None = None,
) -> list[TokenCost]:
    """Measure joules per prompt token and per generated token at each batch size.

    Args:
        model: a Hugging Face causal LM (``AutoModelForCausalLM``; built from a
            config, its weights need not be trained).
        prompt_tokens: tokens per prompt.
        new_tokens: tokens to generate per prompt, >= 2.
        batch_sizes: prompts per call, one measurement each.
        meters: as :class:`~green_callbacks.core.EnergyTracker`.
        rounds: rounds per workload; each figure is the median round.
        min_round_s: each round repeats its workload for at least this long. Units: s.
        seed: seed of the random prompts.
        progress: where a line per batch size goes (default stderr).

    Raises:
        ServingConfigError: a count below its minimum, or a prompt plus its
            generation longer than the model's positions.
        TooLargeError: the generation's activations would not fit in memory
            (:func:`generation_bytes`).
    """
    import torch

    if prompt_tokens < 1 or new_tokens < 2 or not batch_sizes or min(batch_sizes) < 1:
        raise ServingConfigError(
            f"need prompt_tokens >= 1, new_tokens >= 2 and batch sizes >= 1; got {prompt_tokens}, "
            f"{new_tokens}, {list(batch_sizes)}"
        )
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit is not None and prompt_tokens + new_tokens > limit:
        raise ServingConfigError(
            f"a prompt of {prompt_tokens} plus {new_tokens} new tokens exceeds the model's "
            f"{limit} positions; shorten one of them"
        )
    refuse_unless_fits(
        f"generating {prompt_tokens} + {new_tokens} tokens at batch {max(batch_sizes)}",
        generation_bytes(config, max(batch_sizes), prompt_tokens + new_tokens),
        "shorten the prompt or the generation, or use smaller batch sizes",
    )
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    costs = []
    for batch in batch_sizes:
        print(f"batch {batch}: prefill and generate, {rounds} interleaved rounds of >= "
              f"{min_round_s:g} s", file=progress or sys.stderr, flush=True)  # fmt: skip
        ids = torch.randint(0, config.vocab_size, (batch, prompt_tokens), generator=generator)
        ids = ids.to(device)
        mask = torch.ones_like(ids)

        def prefill(ids: Any = ids, mask: Any = mask) -> None:
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)
            _synchronize(torch, device)

        def generate(ids: Any = ids, mask: Any = mask) -> None:
            with torch.inference_mode():
                model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens, do_sample=False,
                    pad_token_id=config.pad_token_id if config.pad_token_id is not None else 0,
                )  # fmt: skip
            _synchronize(torch, device)

        measured = compare_inference(
            {"prefill": prefill, "generate": generate}, batch_size=1, meters=meters,
            rounds=rounds, min_round_s=min_round_s,
        )  # fmt: skip
        first, whole = measured["prefill"], measured["generate"]
        steps = batch * (new_tokens - 1)
        costs.append(TokenCost(
            batch, prompt_tokens, new_tokens, first.j_per_sample / (batch * prompt_tokens),
            (whole.j_per_sample - first.j_per_sample) / steps, whole.j_per_sample / batch,
            (whole.s_per_sample - first.s_per_sample) / (new_tokens - 1),
            whole.energy_kind, whole.energy_source,
        ))  # fmt: skip
    return costs


def _synchronize(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

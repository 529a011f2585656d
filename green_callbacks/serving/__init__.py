"""Inference energy under a request stream, and where a model's joules go.

- :func:`serve`: one stream, one batching policy, in real time, metered:
  joules per request (idle included and above idle), latency percentiles,
  throughput, whether the server kept up;
- :func:`batch_runner`: ``run_batch(n)`` from a torch, Keras or Hugging Face model;
- :func:`run_sweep` and :func:`recommend`: rates x policies, and the policy with
  the fewest joules per request that meets a p99 latency objective;
- :func:`token_energy`: joules per prompt token and per generated token of a
  causal language model;
- :func:`attribute`: a torch model's energy split over its modules by time
  (attributed, not measured); :func:`factorial`: whole-network energy of
  architecture variants (:class:`Architecture`), compared with rank tests;
- :func:`timeline`: torchvision's reference architectures, joules per image
  against year and ImageNet accuracy.

Importing this package imports no framework; docs/inference.md has the method
and its limits.
"""

from green_callbacks.serving.layers import Attribution, attribute
from green_callbacks.serving.models import batch_runner
from green_callbacks.serving.policy import Policy, parse_policy
from green_callbacks.serving.server import ServeConfig, ServingError, ServingResult, serve
from green_callbacks.serving.stream import ServingConfigError, Stream, parse_stream
from green_callbacks.serving.sweep import Recommendation, recommend, run_sweep
from green_callbacks.serving.tokens import TokenCost, token_energy
from green_callbacks.serving.variants import Architecture, analyse, design, factorial, front
from green_callbacks.serving.zoo import ZooEntry, timeline

__all__ = [
    "Architecture",
    "Attribution",
    "Policy",
    "Recommendation",
    "ServeConfig",
    "ServingConfigError",
    "ServingError",
    "ServingResult",
    "Stream",
    "TokenCost",
    "ZooEntry",
    "analyse",
    "attribute",
    "batch_runner",
    "design",
    "factorial",
    "front",
    "parse_policy",
    "parse_stream",
    "recommend",
    "run_sweep",
    "serve",
    "timeline",
    "token_energy",
]

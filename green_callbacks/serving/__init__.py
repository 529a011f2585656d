"""Inference energy under a request stream, and where a model's joules go.

- :func:`serve`: one stream, one batching policy, in real time, metered:
  joules per request (idle included and above idle), latency percentiles,
  throughput, whether the server kept up;
- :func:`batch_runner`: ``run_batch(n)`` from a torch, Keras or Hugging Face model;
- :mod:`~green_callbacks.serving.sweep`: rates x policies, the figure, and the
  policy with the fewest joules per request that meets a latency objective.

Framework-free: models are imported by the caller; docs/inference.md has the
method and its limits.
"""

from green_callbacks.serving.models import batch_runner
from green_callbacks.serving.policy import Policy, parse_policy
from green_callbacks.serving.server import ServeConfig, ServingError, ServingResult, serve
from green_callbacks.serving.stream import ServingConfigError, Stream, parse_stream

__all__ = [
    "Policy",
    "ServeConfig",
    "ServingConfigError",
    "ServingError",
    "ServingResult",
    "Stream",
    "batch_runner",
    "parse_policy",
    "parse_stream",
    "serve",
]

"""pbsvllm: serve LLMs with vLLM on PBS clusters, correctly and fast."""

__version__ = "0.1.0"

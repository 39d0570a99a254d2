"""Fixtures for the real vllm component (filled by its issue)."""

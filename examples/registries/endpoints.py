# Legacy verifiers registry (checkouts older than 2026-05-06). pbsvllm reads it
# with `ast` (never runs it) and rewrites only the source of one alias's entry.
ENDPOINTS = {
    "gpt-judge": {"model": "gpt-4.1-mini", "url": "https://api.openai.com/v1", "key": "OPENAI_API_KEY"},
    "qwen3-vl": {"model": "qwen3-vl", "url": "http://x3006c0s13b1n0.hsn.cm.polaris.alcf.anl.gov:8005/v1",
                 "key": "VLLM_API_KEY"},
    # a list of dicts = replicas (verifiers 2026-02..05)
    "qwen7b-pool": [
        {"model": "qwen7b", "url": "http://x3006c0s19b0n0.hsn.cm.polaris.alcf.anl.gov:8000/v1", "key": "VLLM_API_KEY"},
        {"model": "qwen7b", "url": "http://x3006c0s25b1n0.hsn.cm.polaris.alcf.anl.gov:8000/v1", "key": "VLLM_API_KEY"},
    ],
}

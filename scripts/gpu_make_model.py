"""Build a random-weight model of a real architecture, and its tokenizer, with nothing downloaded.

    python3 scripts/gpu_make_model.py OUTPUT_DIR [--shape qwen2.5-1.5b|qwen3-1.7b|tiny] [--device cuda]

Run on the GPU machine by scripts/gpu-run.sh (no network there, no weights
anywhere). The model has exactly the published shapes of the named model
(layers, hidden size, heads, KV heads, head size, intermediate size,
vocabulary, context), so its weight bytes, KV bytes per token, activation
sizes and kernels are those of the real one; only the values are random. The
planner reads the saved config.json like any other checkpoint.

The tokenizer is built here, in-process: a byte-level BPE trained on the
words ``pbsvllm bench`` draws its synthetic prompts from, padded with filler
pieces to exactly the model's ``vocab_size``, so every id a random model can
emit decodes to text and each bench word is one token (a 128-word prompt is
128 tokens, as with a real tokenizer), whatever tokenizer class transformers
picks for the model type. Same input, same files.

Shapes (from the models' published config.json files):

* ``qwen2.5-1.5b``: Qwen2ForCausalLM, 28 layers, hidden 1536, 12 heads,
  2 KV heads, head_dim 128, intermediate 8960, vocab 151936, 32768 positions,
  tied embeddings (https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json)
* ``qwen3-1.7b``: Qwen3ForCausalLM, 28 layers, hidden 2048, 16 heads, 8 KV
  heads, head_dim 128, intermediate 6144, vocab 151936, 40960 positions, tied
  embeddings: the ~2B text model of the seed's Qwen3-VL-2B
  (https://huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json)
* ``tiny``: the same code path at toy size, to try this script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

SEED = 1234
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SHAPES: Dict[str, Dict[str, Any]] = {
    "qwen2.5-1.5b": {
        "arch": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 151936,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "qwen3-1.7b": {
        "arch": "qwen3", "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
        "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "tiny": {
        "arch": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 4096,
        "max_position_embeddings": 2048, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
}


def bench_words() -> List[str]:
    """The words of pbsvllm bench's synthetic prompts (so each is one token here)."""
    try:
        from pbsvllm.bench import _WORDS
        return sorted(set(_WORDS))
    except ImportError:  # pbsvllm not importable: a plain word list still works
        return "the of and to in is was for on that with as by at from".split()


def build_tokenizer(vocab_size: int, max_len: int) -> Any:
    """A byte-level BPE (the kind Qwen's and Llama 3's tokenizers are) trained here on the bench words.

    transformers 5 loads a ``qwen2`` model's tokenizer through its own ``Qwen2Tokenizer`` class, which
    rebuilds a BPE from the saved vocabulary and merges: a word-level vocabulary (no merges) then splits
    every word into characters. Trained merges survive that, so each bench word is one token for every
    model type. Filler pieces bring the vocabulary to ``vocab_size`` so every id decodes to text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = bench_words()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=min(vocab_size, 60000), special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # each word after a space and at the start of a text, often enough to be merged whole
    tok.train_from_iterator([" ".join(words)] * 4 + [w + " " for w in words], trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    i = 0
    while len(vocab) < vocab_size:  # filler pieces: every id a random model emits decodes to some text
        piece = f"\u0120w{i}"
        i += 1
        if piece not in vocab:
            vocab[piece] = len(vocab)
    if len(vocab) > vocab_size:
        raise SystemExit(f"vocabulary of {vocab_size} is smaller than the {len(vocab)} trained pieces")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), unk_token="<unk>", bos_token="<s>",
        eos_token="<|endoftext|>", pad_token="<pad>", additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = max_len
    return fast


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cuda", help="where to initialise the weights (cuda is much faster)")
    args = ap.parse_args(argv[1:])

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    t0 = time.time()
    shape = dict(SHAPES[args.shape])
    arch = shape.pop("arch")
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer(shape["vocab_size"], shape["max_position_embeddings"])
    if len(tokenizer) != shape["vocab_size"]:
        raise SystemExit(f"tokenizer has {len(tokenizer)} ids, the model {shape['vocab_size']}")
    config = AutoConfig.for_model(
        arch, **shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, use_sliding_window=False,
    )
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.config.dtype = torch.bfloat16
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    tc_path = os.path.join(args.out, "tokenizer_config.json")
    with open(tc_path) as f:
        tc = json.load(f)
    if "chat_template" not in tc and not os.path.exists(os.path.join(args.out, "chat_template.jinja")):
        tc["chat_template"] = CHAT_TEMPLATE
        with open(tc_path, "w") as f:
            json.dump(tc, f, indent=2)
    n_params = sum(p.numel() for p in model.parameters())
    sample = "the city of new school"
    ids = tokenizer(sample)["input_ids"]
    back = tokenizer.decode(ids)
    print(json.dumps({
        "model_dir": args.out, "shape": args.shape, "architecture": config.architectures,
        "params": n_params, "vocab": len(tokenizer), "seconds": round(time.time() - t0, 1),
        "tokenizer_check": {"text": sample, "ids": ids, "decoded": back,
                            "decoded_id_9999": tokenizer.decode([9999 % len(tokenizer)])},
    }))
    if back.strip() != sample:
        print(f"gpu_make_model: tokenizer round trip changed {sample!r} into {back!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

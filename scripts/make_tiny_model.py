"""Build the tiny random-weight Llama that the real-vLLM tests serve.

Run with the CPU vLLM venv's python (scripts/setup-vllm-cpu.sh does):

    python scripts/make_tiny_model.py OUTPUT_DIR

A 2-layer LlamaForCausalLM (hidden 128, 4 heads, 2 KV heads -> head_dim 32,
intermediate 256, max_position 512, bf16, tied embeddings) and a byte-level BPE
tokenizer trained here on generated text (vocab 1024 including 6 specials),
saved with a chat template. Nothing is downloaded; the seed is fixed, so two
builds give the same tokenizer and the same weights.
"""

import json
import os
import random
import sys

SEED = 1234
VOCAB = 1024
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus(n_lines=6000):
    """Deterministic pseudo-English text: enough distinct pairs for 1024 merges."""
    rng = random.Random(SEED)
    syll = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"] + ["th", "st", "ng", "er", "qu"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    words += "the a of to and in is it you that he was for on are with as I his they be at one have this from".split()
    punct = [".", ",", "?", "!", ":", ";"]
    for _ in range(n_lines):
        k = rng.randint(4, 16)
        line = " ".join(rng.choice(words) for _ in range(k))
        yield line.capitalize() + rng.choice(punct) + " " + str(rng.randint(0, 9999))


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus()), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 512
    return fast


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: make_tiny_model.py OUTPUT_DIR\n")
        return 2
    out = argv[1]
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    random.seed(SEED)
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    n_vocab = len(tokenizer)
    if n_vocab != VOCAB:
        raise SystemExit("tokenizer has %d tokens, expected %d: the training corpus is too small" % (n_vocab, VOCAB))
    config = LlamaConfig(
        vocab_size=n_vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Older loaders read the template from tokenizer_config.json only; make sure it is there.
    tc_path = os.path.join(out, "tokenizer_config.json")
    with open(tc_path) as f:
        tc = json.load(f)
    if "chat_template" not in tc and not os.path.exists(os.path.join(out, "chat_template.jinja")):
        tc["chat_template"] = CHAT_TEMPLATE
        with open(tc_path, "w") as f:
            json.dump(tc, f, indent=2)
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["vocab_size"] == n_vocab, (cfg["vocab_size"], n_vocab)
    n_params = sum(p.numel() for p in model.parameters())
    msgs = [{"role": "user", "content": "hello"}]
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    print("make_tiny_model: wrote %s (%d params, vocab %d, head_dim %d); chat prompt %r"
          % (out, n_params, n_vocab, config.head_dim, prompt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

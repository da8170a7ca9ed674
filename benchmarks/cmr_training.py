"""Training throughput of the cmr_recon network (forward + backward + Adam step) at smoke and full size.

    python benchmarks/cmr_training.py [--steps 4] [--full]

Uses the network sizes from params.yaml (`cmr_recon.train` and its `full:` overrides), a batch
at 10 coils and 3 frames, and reports samples per second on the CPU and, where present, CUDA.
"""
from __future__ import annotations

import argparse
import time

import torch

from stages.cmr_recon.learned import network_config
from stages.cmr_recon.losses import reconstruction_loss
from stages.cmr_recon.train import TrainParams
from stages.common.params import read_params_file, validate_step


def network_for(scale: str):
    _, params = validate_step("cmr_recon", "train", TrainParams, read_params_file(), scale=scale)
    return network_config(params.network)


def batch(device, size=4, coils=10, height=96, width=80, adjacent=1):
    frames = 2 * adjacent + 1
    generator = torch.Generator().manual_seed(0)
    kspace = torch.randn(size, frames, coils, height, width, dtype=torch.complex64, generator=generator)
    mask = torch.zeros(size, frames, 1, height, width, dtype=torch.bool)
    mask[..., ::4] = True
    acs = torch.zeros(size, 1, 1, height, width, dtype=torch.bool)
    acs[..., width // 2 - 8: width // 2 + 8] = True
    mask |= acs
    condition = torch.tensor([[0, 0, 1]] * size)
    return [t.to(device) for t in (kspace * mask, mask, acs, condition, torch.rand(size, height, width))]


def samples_per_second(config, device, steps: int, size: int) -> float:
    model = config.build().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    kspace, mask, acs, condition, target = batch(device, size, adjacent=config.adjacent_frames)
    for step in range(steps + 1):  # the first step warms up
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        loss = reconstruction_loss(model(kspace, mask, acs, condition), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--full", action="store_true", help="also the full-scale network (slow on a CPU)")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for scale in ["smoke"] + (["full"] if args.full else []):
        config = network_for(scale)
        parameters = sum(p.numel() for p in config.build().parameters())
        for device in devices:
            size = 4 if scale == "smoke" or device.type == "cuda" else 1
            rate = samples_per_second(config, device, args.steps, size)
            print(f"{scale:5s} {parameters / 1e6:7.2f} M parameters  {device.type:4s} batch {size}: {rate:7.2f} samples/s "
                  f"(10 coils, {2 * config.adjacent_frames + 1} frames, 96 x 80)")


if __name__ == "__main__":
    main()

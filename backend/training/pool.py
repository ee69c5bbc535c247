"""CycleGAN's history of generated images (Shrivastava et al. 2017): the discriminators see a mix
of the newest fakes and older ones, which damps oscillation.

Until the pool holds `size` images every new fake is stored and passed through; after that each
fake is, with probability 1/2, swapped for a random stored one (which is returned instead).
The pool owns its random generator so its choices resume exactly from a checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.random = random.Random(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape drawn from the new fakes and the history."""
        if self.size == 0:
            return batch
        chosen = []
        for image in batch.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                chosen.append(image)
            elif self.random.random() < 0.5:
                index = self.random.randrange(self.size)
                chosen.append(self.images[index])
                self.images[index] = image.clone()
            else:
                chosen.append(image)
        return torch.cat(chosen, 0)

    def state_dict(self) -> dict[str, Any]:
        stored = (torch.cat([i.cpu() for i in self.images], 0) if self.images
                  else torch.empty(0))
        return {"size": self.size, "images": stored, "random": _random_state(self.random)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        stored = state["images"]
        self.images = [stored[i:i + 1].to(device) for i in range(stored.shape[0])] \
            if stored.numel() else []
        _set_random_state(self.random, state["random"])


def _random_state(generator: random.Random) -> list:
    version, internal, gauss = generator.getstate()
    return [version, list(internal), gauss]


def _set_random_state(generator: random.Random, state: list) -> None:
    version, internal, gauss = state
    generator.setstate((version, tuple(internal), gauss))

"""A torchrun worker for tests/test_dist.py: evaluates a fixed synthetic set with the evaluation protocol and
writes what rank 0 got as JSON (argv[1]); with argv[2] == 'fail', rank 1 raises instead."""
import json
import sys

import torch

from common import dist
from common.data import get_dataset
from common.evaluate import EvalConfig, evaluate_synset


def main():
    dist.init(torch.device("cpu"))
    torch.set_num_threads(1)
    if len(sys.argv) > 2 and sys.argv[2] == "fail" and dist.rank() == 1:
        raise RuntimeError("rank 1 failed on purpose")
    real = get_dataset("FashionMNIST").restrict(20, 200, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.cat([real.get_images(c, 2, g) for c in range(10)])
    labels = torch.arange(10).repeat_interleave(2)
    cfg = EvalConfig(epochs=3, num_eval=3, device=torch.device("cpu"), seed=0)
    accs = evaluate_synset("ConvNetW32", images, labels, real, cfg, tag="t")
    if dist.is_main():
        with open(sys.argv[1], "w") as f:
            json.dump({"accs": accs, "world": dist.world_size()}, f)
    dist.finish()


if __name__ == "__main__":
    main()

"""A torchrun worker for tests/test_dist.py: evaluates a fixed synthetic set with the evaluation protocol and
writes what rank 0 got as JSON (argv[1]); with argv[2] == 'fail', rank 1 raises instead; with argv[2] ==
'objects', every rank sends objects of different sizes through common.dist and writes what it received to
argv[1] + '.<rank>'."""
import json
import sys

import torch

from common import dist
from common.data import get_dataset
from common.evaluate import EvalConfig, evaluate_synset


def objects(path: str) -> None:
    r = dist.rank()
    got = dist.gather_objects({"rank": r, "text": "x" * (1000 * r + 1)})  # pickles of different lengths
    sent = dist.broadcast_object({"from": r, "t": torch.arange(5.0) * (r + 1)} if r == 1 else None, src=1)
    total = dist.sum_scalar(r + 0.5)
    with open(f"{path}.{r}", "w") as f:
        json.dump({"gathered": [[g["rank"], len(g["text"])] for g in got], "from": sent["from"],
                   "t": sent["t"].tolist(), "total": total}, f)
    dist.finish()


def main():
    dist.init(torch.device("cpu"))
    torch.set_num_threads(1)
    if len(sys.argv) > 2 and sys.argv[2] == "objects":
        return objects(sys.argv[1])
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

"""Eager CPU time of one decode step on the bundled model, for one or several checkouts in ONE run.

Each checkout runs in its own worker process (1 torch thread), alternating in rounds so machine noise hits all
of them alike; every worker times `session.run(1)` (one real step: draft -> tree -> forward -> verify ->
commit -> heads) with perf_counter, batch 1, CFG 3, `--nodes` tree nodes, new seed per image, and the
medians over all timed steps are compared.

    python benchmarks/step_time.py --repo /path/to/old/checkout --repo . --steps 200
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
import hawk_kernels as hk
steps, nodes, seed0, mode = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pipe = hk.load_demo_pipeline(device="cpu")
tokens, mask = pipe.encode(["a handwritten digit seven"])
negative = torch.tensor([pipe.vocab.unconditional_prompt()])
dec = pipe.decoder(mode, num_nodes=nodes)
times, seed = [], seed0
with torch.no_grad():
    while len(times) < steps:
        session = dec.start(tokens, attention_mask=mask, negative_input_ids=negative, cfg_scale=3.0, seed=seed)
        seed += 1
        while session.least_committed() < pipe.grid.num_body_tokens and len(times) < steps:
            start = time.perf_counter()
            session.run(1)
            times.append(time.perf_counter() - start)
print(json.dumps(dict(repo=sys.argv[1], hawk_kernels=hk.__file__, times=times)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", action="append", required=True, help="checkout to time (give several)")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per checkout")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--mode", default="hawk")
    args = ap.parse_args()
    per_round = -(-args.steps // args.rounds)
    times = {repo: [] for repo in args.repo}
    for round_index in range(args.rounds):
        for repo in args.repo:
            out = subprocess.run([sys.executable, "-c", WORKER, repo, str(per_round), str(args.nodes),
                                  str(1000 * round_index), args.mode], capture_output=True, text=True, check=True,
                                 env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
            result = json.loads(out.stdout.strip().splitlines()[-1])
            times[repo] += result["times"]
    base = statistics.median(times[args.repo[0]])
    for repo, values in times.items():
        median = statistics.median(values)
        print(f"{repo}: median {1e3 * median:.3f} ms over {len(values)} steps "
              f"(p10 {1e3 * statistics.quantiles(values, n=10)[0]:.3f}, p90 {1e3 * statistics.quantiles(values, n=10)[-1]:.3f}); "
              f"{median / base:.3f}x the first")


if __name__ == "__main__":
    main()

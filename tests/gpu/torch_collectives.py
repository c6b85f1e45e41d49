#!/usr/bin/env python3
"""torch_collectives.py - an unchanged torch.distributed program (NCCL
backend) for scripts/gpu-check: run once plainly and once under
LD_PRELOAD=libgcshim.so, the results must be identical.

World size from the environment (torchrun or WORLD_SIZE/RANK/MASTER_*);
1 by default. Prints one line per check, a digest of every result, and a
closing 'N passed, N failed' line.
"""
import hashlib
import os
import sys

import torch
import torch.distributed as dist


def main():
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    dist.init_process_group("nccl", device_id=dev)
    g = torch.Generator(device="cpu").manual_seed(1234)
    passed = failed = 0
    digest = hashlib.sha256()

    def check(name, ok, *tensors):
        nonlocal passed, failed
        for t in tensors:
            digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        print(f"{'ok' if ok else 'FAIL'} {name}", flush=True)
        passed, failed = passed + bool(ok), failed + (not ok)

    # Every rank makes every rank's input from the same seed: exact references.
    inputs = [torch.randint(-1000, 1000, (4096,), generator=g, dtype=torch.int32) for _ in range(world)]
    x = inputs[rank].to(dev)
    ref_sum = torch.stack(inputs).sum(0).to(dev)

    t = x.clone()
    dist.all_reduce(t)
    check("all_reduce int32 sum", torch.equal(t, ref_sum), t)

    f = torch.randn(1 << 20, generator=g).to(dev)
    fr = f.clone()
    dist.all_reduce(fr, op=dist.ReduceOp.MAX)
    check("all_reduce float32 max (world 1: identity)" if world == 1 else "all_reduce float32 max",
          world > 1 or torch.equal(fr, f), fr)

    out = torch.empty(world * x.numel(), dtype=x.dtype, device=dev)
    dist.all_gather_into_tensor(out, x)
    check("all_gather_into_tensor", torch.equal(out, torch.cat(inputs).to(dev)), out)

    big = torch.cat(inputs).to(dev) if world > 1 else x.clone()
    rs = torch.empty(big.numel() // world, dtype=big.dtype, device=dev)
    src = torch.cat([inputs[r] for r in range(world)]).to(dev)
    dist.reduce_scatter_tensor(rs, src)
    want = (src.view(world, -1) * world)[rank] if world > 1 else src
    check("reduce_scatter_tensor", torch.equal(rs, want), rs)

    b = x.clone() if rank == 0 else torch.zeros_like(x)
    dist.broadcast(b, src=0)
    check("broadcast", torch.equal(b, inputs[0].to(dev)), b)

    if world > 1:
        nxt, prv = (rank + 1) % world, (rank - 1) % world
        r = torch.empty_like(x)
        ops = [dist.P2POp(dist.isend, x, nxt), dist.P2POp(dist.irecv, r, prv)]
        for w in dist.batch_isend_irecv(ops):
            w.wait()
        check("send/recv ring", torch.equal(r, inputs[prv].to(dev)), r)

    # A captured all_reduce replayed 50 times on fresh inputs.
    s = torch.cuda.Stream()
    static = torch.zeros(8192, device=dev)
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            dist.all_reduce(static)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        dist.all_reduce(static)
    ok = True
    for i in range(50):
        vals = torch.randn(8192, generator=g)
        static.copy_(vals.to(dev))
        graph.replay()
        torch.cuda.synchronize()
        got = static.cpu()
        ok &= torch.equal(got, vals * world) if world <= 2 else torch.allclose(got, vals * world)
    check("cuda graph all_reduce x50 replays", ok, static)

    dist.barrier()
    dist.destroy_process_group()
    print(f"digest {digest.hexdigest()}")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

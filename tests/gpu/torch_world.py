#!/usr/bin/env python3
"""torch_world.py - an unchanged torch.distributed job of world size N (NCCL
backend, one process per GPU) for scripts/gpu-check --gpus N: run plainly
and under LD_PRELOAD=libgcshim.so, every rank's digest must be identical,
and the shim's merged JSON report must count exactly the NCCL calls this
script makes (it prints them: the 'expect' line of rank 0).

Launch with torchrun --nproc-per-node N, or mpirun -np N (Open MPI's
OMPI_COMM_WORLD_* become RANK/WORLD_SIZE/LOCAL_RANK); env:// rendezvous on
127.0.0.1 (MASTER_PORT, default 29533). Every rank makes every rank's
input from one seed, so every result is checked exactly on every rank:
  all_reduce (int32 sum, float32 max, bfloat16 sum of small integers),
  all_gather_into_tensor, reduce_scatter_tensor, broadcast from every rank,
  send/recv around the ring (dist.send/dist.recv, even ranks first) and
  batch_isend_irecv, new_group of the even ranks with an all_reduce in it,
  and an all_reduce captured into a CUDA graph replayed 20 times.
Prints one line per check, 'digest R HEX' (R = rank), 'expect {json}' on
rank 0 (calls per op summed over the ranks, and the captured all_reduces),
and a closing 'N passed, N failed'.
"""
import hashlib
import json
import os
import sys

for ompi, torch_name in (("OMPI_COMM_WORLD_RANK", "RANK"), ("OMPI_COMM_WORLD_SIZE", "WORLD_SIZE"),
                         ("OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK")):
    if ompi in os.environ and torch_name not in os.environ:
        os.environ[torch_name] = os.environ[ompi]

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

REPLAYS = 20


def main():
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if local >= torch.cuda.device_count():
        print(f"skipped: local rank {local}, {torch.cuda.device_count()} GPUs")
        return 77
    torch.cuda.set_device(local)
    dev = torch.device("cuda", local)
    dist.init_process_group("nccl", device_id=dev)
    g = torch.Generator(device="cpu").manual_seed(4321)
    passed = failed = 0
    digest = hashlib.sha256()
    calls = {}  # op -> calls summed over the ranks

    def count(op, ranks=world):
        calls[op] = calls.get(op, 0) + ranks

    def check(name, ok, *tensors):
        nonlocal passed, failed
        for t in tensors:
            digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        print(f"{'ok' if ok else 'FAIL'} [{rank}] {name}", flush=True)
        passed, failed = passed + bool(ok), failed + (not ok)

    def inputs_of(shape, dtype, lo=-1000, hi=1000):
        return [torch.randint(lo, hi, shape, generator=g).to(dtype) for _ in range(world)]

    # all_reduce: int32 sum, float32 max, bfloat16 sum (small integers: exact)
    ins = inputs_of((4096,), torch.int32)
    t = ins[rank].to(dev)
    dist.all_reduce(t)
    count("AllReduce")
    check("all_reduce int32 sum", torch.equal(t.cpu(), torch.stack(ins).sum(0)), t)
    ins = [x.float() / 8 for x in inputs_of((1 << 20,), torch.int32)]
    t = ins[rank].to(dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    count("AllReduce")
    check("all_reduce float32 max", torch.equal(t.cpu(), torch.stack(ins).max(0).values), t)
    ins = inputs_of((3, 1000), torch.bfloat16, -8, 8)
    t = ins[rank].to(dev)
    dist.all_reduce(t)
    count("AllReduce")
    check("all_reduce bfloat16 sum", torch.equal(t.cpu(), torch.stack(ins).float().sum(0).bfloat16()), t)

    # all_gather_into_tensor, reduce_scatter_tensor
    ins = inputs_of((257, 3), torch.int64)
    out = torch.empty(world * 257, 3, dtype=torch.int64, device=dev)
    dist.all_gather_into_tensor(out, ins[rank].to(dev))
    count("AllGather")
    check("all_gather_into_tensor int64", torch.equal(out.cpu(), torch.cat(ins)), out)
    ins = inputs_of((world * 1000,), torch.float32, -64, 64)
    rs = torch.empty(1000, device=dev)
    dist.reduce_scatter_tensor(rs, ins[rank].to(dev))
    if world > 1:  # torch 2.11 answers a one-rank reduce_scatter_tensor itself (no NCCL call)
        count("ReduceScatter")
    want = torch.stack(ins).sum(0).view(world, 1000)[rank]
    check("reduce_scatter_tensor float32", torch.equal(rs.cpu(), want), rs)

    # broadcast from every rank
    ins = inputs_of((5000,), torch.int32)
    for src in range(world):
        b = ins[rank].to(dev)
        dist.broadcast(b, src=src)
        count("Broadcast")
        check(f"broadcast from {src}", torch.equal(b.cpu(), ins[src]), b)

    # send/recv around the ring: blocking, even ranks send first; then batched
    if world > 1:
        nxt, prv = (rank + 1) % world, (rank - 1) % world
        ins = inputs_of((3000,), torch.int32)
        x, r = ins[rank].to(dev), torch.empty(3000, dtype=torch.int32, device=dev)
        for phase in range(2):
            if rank % 2 == phase:
                dist.send(x, nxt)
            else:
                dist.recv(r, prv)
        count("Send")
        count("Recv")
        check("send/recv ring", torch.equal(r.cpu(), ins[prv]), r)
        r2 = torch.empty_like(r)
        for w in dist.batch_isend_irecv([dist.P2POp(dist.isend, x, nxt), dist.P2POp(dist.irecv, r2, prv)]):
            w.wait()
        count("Send")
        count("Recv")
        check("batch_isend_irecv ring", torch.equal(r2.cpu(), ins[prv]), r2)

    # new_group: the even ranks all-reduce among themselves
    evens = list(range(0, world, 2))
    sub = dist.new_group(ranks=evens)
    ins = inputs_of((2048,), torch.int32)
    if rank in evens:
        t = ins[rank].to(dev)
        dist.all_reduce(t, group=sub)
        check(f"new_group {evens} all_reduce", torch.equal(t.cpu(), torch.stack([ins[i] for i in evens]).sum(0)), t)
    count("AllReduce", len(evens))

    # an all_reduce captured into a CUDA graph, replayed on fresh inputs
    s = torch.cuda.Stream()
    static = torch.zeros(8192, device=dev)
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            dist.all_reduce(static)
            count("AllReduce")
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        dist.all_reduce(static)
    count("AllReduce")
    ok = True
    for i in range(REPLAYS):
        ins = [x.float() for x in inputs_of((8192,), torch.int32)]
        static.copy_(ins[rank].to(dev))
        graph.replay()
        torch.cuda.synchronize()
        ok &= torch.equal(static.cpu(), torch.stack(ins).sum(0))
    check(f"captured all_reduce x{REPLAYS} replays", ok, static)
    torch.cuda.synchronize()
    del graph
    dist.destroy_process_group()
    print(f"digest {rank} {digest.hexdigest()}")
    if rank == 0:
        print("expect " + json.dumps({"world": world, "calls": calls, "captured": {"AllReduce": world}},
                                     sort_keys=True))
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

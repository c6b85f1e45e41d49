#!/usr/bin/env python3
"""pynccl_ctypes.py - loads libnccl.so.2 the way vLLM's pynccl does
(ctypes.CDLL + attribute lookup, i.e. dlopen + dlsym on that handle) and
runs a one-rank all-reduce on a CUDA tensor. Under LD_PRELOAD=libgcshim.so
with GCSHIM_REPORT=path.json the report must count exactly these calls.
Prints 'N passed, N failed'."""
import ctypes
import json
import os
import sys

import torch

ITERS = 7


class UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_byte * 128)]


def main():
    lib = ctypes.CDLL(os.environ.get("PYNCCL_LIBRARY", "libnccl.so.2"))
    passed = failed = 0

    def check(name, ok):
        nonlocal passed, failed
        print(f"{'ok' if ok else 'FAIL'} {name}", flush=True)
        passed, failed = passed + bool(ok), failed + (not ok)

    ver = ctypes.c_int()
    check("ncclGetVersion", lib.ncclGetVersion(ctypes.byref(ver)) == 0 and ver.value >= 22800)
    uid = UniqueId()
    check("ncclGetUniqueId", lib.ncclGetUniqueId(ctypes.byref(uid)) == 0)
    torch.cuda.set_device(0)
    comm = ctypes.c_void_p()
    lib.ncclCommInitRank.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, UniqueId, ctypes.c_int]
    check("ncclCommInitRank", lib.ncclCommInitRank(ctypes.byref(comm), 1, uid, 0) == 0)
    lib.ncclAllReduce.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    x = torch.arange(1 << 16, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    stream = torch.cuda.current_stream().cuda_stream
    ok = True
    for _ in range(ITERS):
        ok &= lib.ncclAllReduce(x.data_ptr(), y.data_ptr(), x.numel(), 7, 0, comm, stream) == 0  # float32, sum
    torch.cuda.synchronize()
    check(f"ncclAllReduce x{ITERS}", ok and torch.equal(x, y))
    check("ncclCommDestroy", lib.ncclCommDestroy(comm) == 0)

    report = os.environ.get("GCSHIM_REPORT", "")
    if report.endswith(".json"):
        flush = getattr(ctypes.CDLL(None), "gcshim_report_flush", None)
        check("gcshim_report_flush reachable by dlsym", flush is not None)
        if flush:
            flush()
        with open(report) as f:
            rep = json.load(f)
        ops = {o["op"]: o for g in rep["groups"] for o in g["ops"]}
        ar = ops.get("AllReduce", {})
        check(f"report counts {ITERS} AllReduce calls", ar.get("calls") == ITERS)
        check("report counts the bytes", ar.get("bytes") == ITERS * x.numel() * 4)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

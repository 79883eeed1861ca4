"""Time the Triton selective scan's tiles against mamba-ssm's kernel, on one GPU, at the reference
encoder's scan (batch 64, both directions' 2 x 512 channels, 512 steps, 16 states, B and C in 2 groups):
    python tools/scan_tiles.py [--batch 64] [--dim 1024] [--length 512] [--block-d 2 4 8] [--warps 2 4 8]
        [--chunk 512 16384]
Prints ms per forward and per backward call, and the largest difference from mamba-ssm's outputs and
gradients; the fastest tiles go into ginr/ops/scan_triton.py."""

import argparse
import itertools

import torch
import triton
from triton.testing import do_bench

from ginr.ops import backend
from ginr.ops import scan_triton as st


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--block-d", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--warps", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument(
        "--chunk", type=int, nargs="+", default=[st.CHUNK], help="steps a program scans (powers of 2)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    bf16 = {"device": "cuda", "dtype": torch.bfloat16}
    shape = (args.batch, args.dim, args.length)
    u, delta, z = torch.randn(*shape, **bf16), torch.randn(*shape, **bf16) - 2, torch.randn(*shape, **bf16)
    A = -torch.arange(1, args.state + 1, device="cuda", dtype=torch.float32).repeat(args.dim, 1)
    B, C = (torch.randn(args.batch, args.groups, args.state, args.length, **bf16) for _ in range(2))
    D, bias = torch.ones(args.dim, device="cuda"), torch.rand(args.dim, device="cuda") - 4
    inputs = (u, delta, A, B, C, D, z, bias)
    dout = torch.randn(*shape, **bf16)
    kernel = backend.selective_scan_cuda
    want = None
    if kernel is not None:
        scan = torch.ops.ginr.selective_scan_fwd
        out_z, states, out = scan(*inputs, True)
        fwd = do_bench(lambda: scan(*inputs, True))
        bwd = do_bench(lambda: torch.ops.ginr.selective_scan_bwd(*inputs, dout, states, out, True))
        print(f"mamba-ssm: forward {fwd:.3f} ms, backward {bwd:.3f} ms", flush=True)
        grads = torch.ops.ginr.selective_scan_bwd(*inputs, dout, states, out, True)
        want = (out_z, *grads)
    names = ("out", "du", "ddelta", "dA", "dB", "dC", "dD", "dbias", "dz")
    per_group = args.dim // args.groups
    print(
        f"default tiles: forward {st.tile(args.length, per_group, st.FWD_ROWS)}, backward {st.tile(args.length, per_group, st.BWD_ROWS)}"
    )
    for chunk, block_d, warps in itertools.product(args.chunk, args.block_d, args.warps):
        block_l = min(triton.next_power_of_2(args.length), chunk)
        tile = {"BLOCK_D": block_d, "BLOCK_L": block_l, "num_warps": warps}
        name = f"chunk {block_l:>5}, block_d {block_d:>2}, {warps:>2} warps"
        try:
            out, y, starts = st.launch_fwd(*inputs, True, tile)
            fwd = do_bench(lambda t=tile: st.launch_fwd(*inputs, True, t))
            grads = st.launch_bwd(*inputs, y, starts, dout, True, tile)
            bwd = do_bench(lambda t=tile, y=y, s=starts: st.launch_bwd(*inputs, y, s, dout, True, t))
        except Exception as err:  # a tile too large for the registers or shared memory
            print(f"{name}: failed ({type(err).__name__}: {err})")
            continue
        line = f"{name}: forward {fwd:.3f} ms, backward {bwd:.3f} ms"
        if want is not None:
            diffs = [
                (g.float() - w.float()).abs().max().item() / max(w.float().abs().max().item(), 1e-12)
                for g, w in zip((out, *grads), want, strict=True)
            ]
            line += " | max rel diff " + " ".join(f"{n} {d:.1e}" for n, d in zip(names, diffs, strict=True))
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""Time the GEGLU kernels' tiles against Inductor's fusion of the same function, on one GPU:
    python tools/geglu_tiles.py [--rows 65536] [--width 2048] [--block-rows 8 16 32] [--block-cols 64 128 256]
                                [--warps 4 8] [--rows-per-program 128 256 512]
Prints ms per call and the HBM rate each reaches (bytes that must move / time); the fastest tiles go
into ginr/ops/geglu_triton.py."""

import argparse
import itertools

import torch
from triton.testing import do_bench

from ginr.ops import geglu_triton as gt
from ginr.ops.geglu import geglu_torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--block-rows", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--block-cols", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--warps", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--rows-per-program", type=int, nargs="+", default=[128, 256, 512])
    args = parser.parse_args()
    h = torch.randn(args.rows, 2 * args.width, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(2 * args.width, device="cuda")
    grad = torch.randn(args.rows, args.width, device="cuda", dtype=torch.bfloat16)
    fwd_bytes = h.numel() * 2 + grad.numel() * 2  # read h, write the output
    bwd_bytes = 2 * h.numel() * 2 + grad.numel() * 2  # read h and the gradient, write dh

    def rate(ms: float, moved: int) -> str:
        return f"{ms:.3f} ms  {moved / ms / 1e9:.2f} TB/s"

    print(f"copy of h: {rate(do_bench(lambda: h.clone()), 2 * h.numel() * 2)}")
    compiled = torch.compile(geglu_torch)
    print(f"inductor forward: {rate(do_bench(lambda: compiled(h, bias)), fwd_bytes)}")
    hg, bg = h.clone().requires_grad_(), bias.clone().requires_grad_()

    def inductor_backward():
        out = compiled(hg, bg)
        torch.autograd.grad(out, (hg, bg), grad)

    both = do_bench(inductor_backward)
    print(f"inductor forward + backward (with the bias gradient): {rate(both, fwd_bytes + bwd_bytes)}")
    for rows, cols, warps in itertools.product(args.block_rows, args.block_cols, args.warps):
        tile = {"BLOCK_ROWS": rows, "BLOCK_COLS": cols, "num_warps": warps}
        fwd = do_bench(lambda tile=tile: gt.launch_fwd(h, bias, tile))
        line = f"tile {rows:>2} x {cols:>3}, {warps} warps: forward {rate(fwd, fwd_bytes)}"
        for per_program in args.rows_per_program:
            bwd = do_bench(lambda t=tile, n=per_program: gt.launch_bwd(h, bias, grad, t, n))
            line += f" | backward, {per_program} rows/program: {rate(bwd, bwd_bytes)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

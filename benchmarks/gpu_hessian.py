"""The exact Hessian of poisson_fem on a GPU against the same Hessian on the host's cores.

    python benchmarks/gpu_hessian.py [--sizes 10 30 100] [--repeat 5] [--widths 20 20 20] [--gpu-only]
                                     [--trust-exact K]

    (issue 21, P ~ 10^4 at Q = 6*10^4: --sizes 100 --widths 100 100 --gpu-only --trust-exact 3)

For each P1 mesh (n x n squares, the 921-parameter 2-20-20-20-1 MLP) it builds the problem
twice — on the host and with ``device="cuda"`` (network, closed-form network Hessian, J,
the dense P x P algebra on the GPU; the sparse solve as a dense Cholesky on the GPU up to
its ``dense_limit``) — and prints, measured in the same run and interleaved:

* the median time of one structured Hessian on the host (torch's threads: all cores
  unless ``OMP_NUM_THREADS`` says otherwise) and on the GPU (synchronized), and their ratio;
* **bound** on each device: one float64 ``(P x Q) (Q x P)`` product (2 P^2 Q flops);
* the relative difference between the two Hessians and the GPU Hessian's asymmetry.

``--widths``: the hidden widths (2-100-100-1: 10,501 parameters); ``--gpu-only``: no host Hessian
(at P = 10^4 and Q = 6*10^4 it takes minutes on a few cores; the host columns are then blank);
``--trust-exact K``: also K trust-exact iterations on the GPU (the Hessian, and Moré–Sorensen's
factorizations on the GPU), their time per iteration. Without CUDA it says so and exits 0
(issue 8: "where a GPU is at hand").
"""

from __future__ import annotations

import argparse
import time

import torch

from invfem.derivatives import symmetry_error
from invfem.problems.poisson_fem import make_problem
from _timing import interleaved


def synced(fn):
    def call():
        out = fn()
        torch.cuda.synchronize()
        return out
    return call


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--widths", type=int, nargs="+", default=[20, 20, 20])
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--trust-exact", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure")
        return
    print(f"torch {torch.__version__}, host: {torch.get_num_threads()} threads; GPU: {torch.cuda.get_device_name()}\n")
    header = (f"{'mesh':>7} {'dofs':>6} {'Q':>6} {'host s':>8} {'gpu s':>8} {'host/gpu':>8} {'bound host':>10} "
              f"{'bound gpu':>10} {'gpu/bound':>9} {'rel.diff':>9} {'asym':>8}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        widths = (2, *args.widths, 1)
        gpu = make_problem(n=n, seed=0, widths=widths, device="cuda")
        host = None if args.gpu_only else make_problem(n=n, seed=0, widths=widths)
        p, q = gpu.n_params, gpu.info["n_quad"]
        a, b = torch.randn(p, q), torch.randn(q, p)
        ga, gb = a.cuda(), b.cuda()
        work = {"gpu": synced(lambda: gpu.hessian(gpu.theta0)), "bound_gpu": synced(lambda: ga @ gb)}
        if host is not None:
            work.update(host=lambda: host.hessian(host.theta0), bound_host=lambda: a @ b)
        times = interleaved(work, args.repeat)
        h_gpu = gpu.hessian(gpu.theta0).cpu()
        if host is None:
            diff, host_cols = float("nan"), f"{'-':>8} {times['gpu']:8.4f} {'-':>8} {'-':>10}"
        else:
            h_host = host.hessian(host.theta0)
            diff = float(torch.linalg.norm(h_gpu - h_host) / torch.linalg.norm(h_host))
            host_cols = (f"{times['host']:8.3f} {times['gpu']:8.4f} {times['host'] / times['gpu']:8.1f} "
                         f"{times['bound_host']:10.4f}")
        print(f"{f'{n}x{n}':>7} {gpu.info['n_dofs']:>6} {q:>6} {host_cols} {times['bound_gpu']:10.5f} "
              f"{times['gpu'] / times['bound_gpu']:9.1f} {diff:9.1e} {symmetry_error(h_gpu):8.1e}  (P = {p})", flush=True)
        if args.trust_exact:
            from invfem import minimize

            start = time.perf_counter()
            res = minimize(gpu.loss, gpu.theta0, method="trust-exact", hess=gpu.hessian,
                           options={"maxiter": args.trust_exact})
            torch.cuda.synchronize()
            print(f"        trust-exact on the GPU: {res.nit} iterations in {time.perf_counter() - start:.2f} s "
                  f"({(time.perf_counter() - start) / max(res.nit, 1):.2f} s per iteration), loss {res.fun:.3e}",
                  flush=True)

if __name__ == "__main__":
    main()

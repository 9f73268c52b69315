"""Trust-region subproblem solvers against scipy's test matrices and an eigendecomposition."""

import json
from pathlib import Path

import numpy as np
import pytest

from invfem.optim.subproblems import (diagonal_trust_region, eigen_trust_region, gltr, model_value, more_sorensen,
                                      steihaug_cg)

# scipy/optimize/tests/test_trustregion_exact.py (TestIterativeSubproblem)
H_SCIPY = np.array([[10, 2, 3, 4], [2, 1, 7, 1], [3, 7, 1, 7], [4, 1, 7, 2]], dtype=float)
H_ZERO_JAC = np.array([
    [0.88547534, 2.90692271, 0.98440885, -0.78911503, -0.28035809],
    [2.90692271, -0.04618819, 0.32867263, -0.83737945, 0.17116396],
    [0.98440885, 0.32867263, -0.87355957, -0.06521957, -1.43030957],
    [-0.78911503, -0.83737945, -0.06521957, -1.645709, -0.33887298],
    [-0.28035809, 0.17116396, -1.43030957, -0.33887298, -1.68586978]])
TIGHT = dict(k_easy=1e-10, k_hard=1e-10, maxiter=200)


def test_easy_case_matches_scipy():
    sol = more_sorensen(H_SCIPY, np.ones(4), 1.0, **TIGHT)
    np.testing.assert_allclose(sol.p, [0.00393332, -0.55260862, 0.67065477, -0.49480341], atol=1e-7)
    assert sol.hits_boundary and not sol.hard_case and sol.converged


def test_hard_case_matches_scipy():
    g = np.array([6.4852641521327437, 1, 1, 1])
    sol = more_sorensen(H_SCIPY, g, 1.0, **TIGHT)
    assert sol.hard_case and sol.hits_boundary
    assert sol.lam == pytest.approx(8.2151519874416614, rel=1e-7)   # lam* = -lambda_min(H)
    assert np.linalg.norm(sol.p) == pytest.approx(1.0, rel=1e-9)
    ref = eigen_trust_region(H_SCIPY, g, 1.0)
    assert ref.hard_case
    assert model_value(H_SCIPY, g, sol.p) == pytest.approx(model_value(H_SCIPY, g, ref.p), rel=1e-8)


def test_interior_convergence_matches_scipy():
    H = np.array([[1.812159, 0.82687265, 0.21838879, -0.52487006, 0.25436988],
                  [0.82687265, 2.66380283, 0.31508988, -0.40144163, 0.08811588],
                  [0.21838879, 0.31508988, 2.38020726, -0.3166346, 0.27363867],
                  [-0.52487006, -0.40144163, -0.3166346, 1.61927182, -0.42140166],
                  [0.25436988, 0.08811588, 0.27363867, -0.42140166, 1.33243101]])
    g = np.array([0.75798952, 0.01421945, 0.33847612, 0.83725004, -0.47909534])
    sol = more_sorensen(H, g, 1.1)
    np.testing.assert_allclose(sol.p, [-0.68585435, 0.1222621, -0.22090999, -0.67005053, 0.31586769], atol=1e-7)
    assert not sol.hits_boundary and sol.lam == 0 and sol.iterations == 1


@pytest.mark.parametrize("g", [np.zeros(5), np.array([0, 0, 0, 0, 1e-15])])
def test_zero_gradient_moves_along_negative_curvature(g):
    sol = more_sorensen(H_ZERO_JAC, g, 1.1, **TIGHT)
    expected = np.array([0.06910534, -0.01432721, -0.65311947, -0.23815972, -0.84954934])
    # +-z are both global minimisers when g = 0
    assert min(np.abs(sol.p - expected).max(), np.abs(sol.p + expected).max()) < 1e-6
    assert sol.hits_boundary


def test_inner_iterations_are_capped_scipy_gh12513():
    data = json.loads((Path(__file__).parent / "data" / "scipy_gh12513.json").read_text())
    H, g = np.array(data["H"]), np.array(data["g"])
    ref = model_value(H, g, eigen_trust_region(H, g, 1.0).p)
    for maxiter in (50, 10, 1):
        sol = more_sorensen(H, g, 1.0, maxiter=maxiter)
        assert sol.iterations <= maxiter
        assert np.linalg.norm(sol.p) <= 1.0 + 1e-12
        assert model_value(H, g, sol.p) <= ref + 1e-6 * max(1.0, abs(ref))


def _random_subproblems(count, seed=2026):
    """Random small symmetric indefinite (H, g, radius); every fourth one in the hard case."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        n = int(rng.integers(1, 13))
        a = rng.standard_normal((n, n))
        H = a + a.T
        g = rng.standard_normal(n)
        if k % 4 == 0 and n > 1:
            _, vecs = np.linalg.eigh(H)
            g -= vecs[:, 0] * (vecs[:, 0] @ g)
        yield H, g, float(10 ** rng.uniform(-2, 1.5))


def test_more_sorensen_is_the_global_minimiser_on_1200_random_subproblems():
    hard_cases = worst_step = worst_model = 0.0
    for H, g, radius in _random_subproblems(1200):
        ref = eigen_trust_region(H, g, radius)
        sol = more_sorensen(H, g, radius, k_easy=1e-12, k_hard=1e-12, maxiter=300)
        m_ref = model_value(H, g, ref.p)
        assert np.linalg.norm(sol.p) <= radius * (1 + 2e-6)            # within k_easy of the boundary
        worst_model = max(worst_model, (model_value(H, g, sol.p) - m_ref) / max(1.0, abs(m_ref)))
        if ref.hard_case:
            hard_cases += 1      # the minimiser is not unique (p + tau z and p - tau z)
        else:
            worst_step = max(worst_step, np.linalg.norm(sol.p - ref.p) / max(1.0, np.linalg.norm(ref.p)))
    assert hard_cases >= 100
    assert worst_step < 1e-6
    assert worst_model < 1e-9


def test_gltr_is_the_global_minimiser_outside_the_hard_case():
    checked = 0
    for H, g, radius in _random_subproblems(1200, seed=7):
        ref = eigen_trust_region(H, g, radius)
        if ref.hard_case:
            continue  # g has no component along the eigenvector: not in any Krylov space of (H, g)
        sol = gltr(lambda v: H @ v, g, radius, tol=1e-12)
        assert np.linalg.norm(sol.p - ref.p) <= 1e-6 * max(1.0, np.linalg.norm(ref.p))
        checked += 1
    assert checked >= 800


def test_gltr_continues_past_negative_curvature_where_steihaug_stops():
    # negative curvature shows up in the first direction: Steihaug stops at once on the boundary
    H = np.diag([-1.0, 2.0, 3.0, 4.0])
    H[0, 1:] = H[1:, 0] = 0.5
    g = np.array([1.0, 1.0, 1.0, 1.0])
    radius = 2.0
    ref = eigen_trust_region(H, g, radius)
    cg = steihaug_cg(lambda v: H @ v, g, radius)
    lanczos = gltr(lambda v: H @ v, g, radius, tol=1e-12)
    assert cg.negative_curvature and lanczos.negative_curvature
    assert lanczos.iterations > cg.iterations
    assert model_value(H, g, lanczos.p) == pytest.approx(model_value(H, g, ref.p), rel=1e-10)
    assert model_value(H, g, cg.p) > model_value(H, g, ref.p) + 1e-3


def test_steihaug_solves_convex_interior_problems_and_beats_cauchy_otherwise():
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 10))
        a = rng.standard_normal((n, n))
        H = a + a.T + (0 if rng.random() < 0.5 else 2 * n) * np.eye(n)
        g = rng.standard_normal(n)
        radius = float(10 ** rng.uniform(-1, 2))
        sol = steihaug_cg(lambda v: H @ v, g, radius, tol=1e-12)
        assert np.linalg.norm(sol.p) <= radius * (1 + 1e-12)
        ref = eigen_trust_region(H, g, radius)
        if np.linalg.eigvalsh(H)[0] > 0 and not ref.hits_boundary:
            np.testing.assert_allclose(sol.p, ref.p, atol=1e-8 * max(1, np.linalg.norm(ref.p)))
        # at least the Cauchy decrease (Nocedal & Wright, Lemma 4.3 / the first CG iterate)
        gHg = g @ H @ g
        tau = 1.0 if gHg <= 0 else min(np.linalg.norm(g) ** 3 / (radius * gHg), 1.0)
        cauchy = -tau * radius / np.linalg.norm(g) * g
        assert model_value(H, g, sol.p) <= model_value(H, g, cauchy) + 1e-12


def test_diagonal_solver_hard_case_reaches_the_boundary():
    y, lam, hard = diagonal_trust_region(np.array([-2.0, 1.0, 3.0]), np.array([0.0, 1.0, 1.0]), 1.0)
    assert hard and lam == pytest.approx(2.0)
    assert np.linalg.norm(y) == pytest.approx(1.0)


def test_lowest_ritz_value_bounds_the_smallest_eigenvalue_from_above():
    from invfem.optim.subproblems import eigenvalue_bounds, lowest_ritz_value

    rng = np.random.default_rng(7)
    for n in (5, 60, 300):
        a = rng.standard_normal((n, n))
        h = (a + a.T) / 2
        lam_min = np.linalg.eigvalsh(h)[0]
        ritz = lowest_ritz_value(h, steps=40)
        assert ritz >= lam_min - 1e-10 * abs(lam_min)
        if n <= 40:
            assert ritz == pytest.approx(lam_min, rel=1e-10)       # the Krylov space is the whole space
        upper, minus_lower, min_diag, ritz_again = eigenvalue_bounds(h)
        assert upper >= np.linalg.eigvalsh(h)[-1] and minus_lower >= -lam_min
        assert ritz_again == lowest_ritz_value(h) >= lam_min - 1e-10 * abs(lam_min)


@pytest.mark.parametrize("seed", range(40))
def test_more_sorensen_with_hints_still_finds_the_global_minimiser(seed):
    """Warm starts (a previous multiplier, a lower bound) change only the path, not the answer."""
    rng = np.random.default_rng(seed)
    n = 8
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    h = q @ np.diag(rng.uniform(-2, 3, n)) @ q.T
    g = rng.standard_normal(n)
    radius = float(rng.uniform(0.2, 3.0))
    best = eigen_trust_region(h, g, radius)
    plain = more_sorensen(h, g, radius, k_easy=1e-6, k_hard=1e-6)
    wide = more_sorensen(h, g, 2 * radius, k_easy=1e-6, k_hard=1e-6)
    for sol in (more_sorensen(h, g, radius, k_easy=1e-6, k_hard=1e-6, lam_guess=float(rng.uniform(0, 5))),
                more_sorensen(h, g, radius, k_easy=1e-6, k_hard=1e-6, lam_lower=wide.lam)):
        assert model_value(h, g, sol.p) <= model_value(h, g, best.p) + 1e-7 * max(1.0, abs(model_value(h, g, best.p)))
        assert np.linalg.norm(sol.p) <= radius * (1 + 2e-6)            # within k_easy of the boundary
        assert model_value(h, g, sol.p) == pytest.approx(model_value(h, g, plain.p), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("solver", [steihaug_cg, gltr], ids=["steihaug", "gltr"])
def test_krylov_solvers_return_h_times_p_without_another_product(solver):
    """The predicted decrease uses the solver's H p (no extra product): it must be H @ p."""
    checked = 0
    for H, g, radius in _random_subproblems(200, seed=11):
        sol = solver(lambda v: H @ v, g, radius, tol=1e-10)
        assert sol.hp is not None
        assert np.linalg.norm(sol.hp - H @ sol.p) <= 1e-8 * max(1.0, np.linalg.norm(H @ sol.p))
        checked += 1
    assert checked == 200


@pytest.mark.parametrize("solver", [steihaug_cg, gltr], ids=["steihaug", "gltr"])
def test_a_rejected_step_replays_the_kept_products(solver):
    """After a rejection the same Krylov sequence runs at a smaller radius: Replay hands back the
    kept products (Steihaug stops earlier on the same path: no new product), and the step equals a
    fresh solve's."""
    from invfem.optim.steps import Replay

    rng = np.random.default_rng(5)
    a = rng.standard_normal((30, 30))
    H, g = a @ a.T + 0.1 * np.eye(30), rng.standard_normal(30)
    calls = []
    replay = Replay(lambda v: calls.append(1) or H @ v)
    first = solver(replay, g, 10.0, tol=1e-10)
    computed = len(calls)
    replay.restart()
    second = solver(replay, g, 0.05, tol=1e-10)
    fresh = solver(lambda v: H @ v, g, 0.05, tol=1e-10)
    np.testing.assert_allclose(second.p, fresh.p, rtol=1e-12, atol=1e-14)
    assert replay.reused >= min(first.iterations, second.iterations) - 1
    if solver is steihaug_cg:
        assert len(calls) == computed                 # nothing recomputed
    else:
        assert len(calls) - computed < fresh.iterations


def test_eisenstat_walker_forcing_term():
    """Choice 2 of Eisenstat & Walker (1996): 0.9 (|g_k| / |g_k-1|)^2, safeguarded, at most 0.5."""
    from types import SimpleNamespace

    from invfem.optim.steps import forcing_term

    assert forcing_term("superlinear", 0.04) == pytest.approx(0.2)
    assert forcing_term("eisenstat-walker", 1.0) == 0.5                                   # no history
    prev = SimpleNamespace(optimality=1.0, eta=0.5)
    assert forcing_term("eisenstat-walker", 0.1, prev) == pytest.approx(0.225)              # safeguard 0.9 * 0.5^2
    prev = SimpleNamespace(optimality=1.0, eta=0.1)
    assert forcing_term("eisenstat-walker", 0.1, prev) == pytest.approx(0.009)              # 0.9 * 0.1^2
    assert forcing_term("eisenstat-walker", 2.0, prev) == 0.5                               # capped


def test_preconditioned_steihaug_stays_in_the_m_norm_ball_and_solves_interior_problems():
    """Steihaug–Toint with M: the identity preconditioner is plain Steihaug; with an SPD M the step
    satisfies ||p||_M <= radius, reports that norm, and an interior convex step is the Newton step."""
    rng = np.random.default_rng(8)
    for trial in range(100):
        n = int(rng.integers(2, 12))
        a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
        H = a @ a.T + (0.5 if trial % 2 else -3.0) * np.eye(n)
        M = b @ b.T + 0.5 * np.eye(n)
        g = rng.standard_normal(n)
        radius = float(10 ** rng.uniform(-1, 1.5))
        plain = steihaug_cg(lambda v: H @ v, g, radius, tol=1e-12)
        same = steihaug_cg(lambda v: H @ v, g, radius, tol=1e-12, precondition=lambda r: r.copy())
        np.testing.assert_allclose(same.p, plain.p, rtol=1e-9, atol=1e-12)
        sol = steihaug_cg(lambda v: H @ v, g, radius, tol=1e-12, maxiter=10 * n,
                          precondition=lambda r: np.linalg.solve(M, r))
        m_norm = float(np.sqrt(sol.p @ M @ sol.p))
        assert m_norm <= radius * (1 + 1e-8)
        assert sol.norm == pytest.approx(m_norm, rel=1e-7, abs=1e-12)
        if np.linalg.eigvalsh(H)[0] > 0 and not sol.hits_boundary:
            np.testing.assert_allclose(sol.p, -np.linalg.solve(H, g), rtol=1e-6, atol=1e-8)

import math

import pytest
import torch

from hsr.heads import kl_divergence, principal_angles, subspace_angle_degrees, top_left_singular


def _basis(n, cols):
    return torch.eye(n, dtype=torch.float64)[:, cols]


@pytest.mark.parametrize("theta", [0.0, 1e-7, 1e-3, 0.4, math.pi / 4, 1.2, math.pi / 2])
def test_principal_angle_of_a_rotated_line(theta):
    a = _basis(5, [0])
    b = math.cos(theta) * _basis(5, [0]) + math.sin(theta) * _basis(5, [1])
    angle = principal_angles(a, b)
    assert angle.shape == (1,)
    assert abs(float(angle[0]) - theta) < 1e-12 + 1e-9 * theta


def test_principal_angles_of_planes_and_random_rotation_invariance():
    alpha, beta = 0.2, 0.9
    e = torch.eye(6, dtype=torch.float64)
    a = e[:, [0, 1]]
    b = torch.stack([math.cos(alpha) * e[0] + math.sin(alpha) * e[2], math.cos(beta) * e[1] + math.sin(beta) * e[3]], 1)
    torch.testing.assert_close(principal_angles(a, b), torch.tensor([alpha, beta], dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    mix, _ = torch.linalg.qr(torch.randn(2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(principal_angles(q @ a, q @ b @ mix), torch.tensor([alpha, beta], dtype=torch.float64))


def test_generalized_ships_on_matrices_with_known_subspaces():
    gen = torch.Generator().manual_seed(0)
    n, d, theta = 6, 10, 0.3
    u = torch.zeros(n, dtype=torch.float64)
    u[0] = 1
    u2 = u.clone() * math.cos(theta)
    u2[1] = math.sin(theta)
    v = torch.randn(d, dtype=torch.float64, generator=gen)
    noise = 1e-9 * torch.randn(n, d, dtype=torch.float64, generator=gen)
    base, other = 50 * torch.outer(u, v) + noise, 3 * torch.outer(u2, v) + noise
    assert abs(subspace_angle_degrees(base, other, 1) - math.degrees(theta)) < 1e-5
    # scaling or changing the right factor does not move the left subspace
    assert subspace_angle_degrees(base, 7 * base, 1) < 1e-6
    basis = top_left_singular(base, 1)
    assert abs(abs(float(basis[0, 0])) - 1) < 1e-9
    # rank 2: two known angles add up
    e = torch.eye(n, dtype=torch.float64)
    w = torch.randn(2, d, dtype=torch.float64, generator=gen)
    m1 = torch.stack([e[0], e[1]], 1) @ torch.diag(torch.tensor([9.0, 5.0], dtype=torch.float64)) @ w
    rot = torch.stack([math.cos(0.1) * e[0] + math.sin(0.1) * e[2], math.cos(0.5) * e[1] + math.sin(0.5) * e[3]], 1)
    m2 = rot @ torch.diag(torch.tensor([9.0, 5.0], dtype=torch.float64)) @ w
    assert abs(subspace_angle_degrees(m1, m2, 2) - math.degrees(0.6)) < 1e-6


def test_kl_divergence():
    p = torch.log_softmax(torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]]), -1)
    q = torch.log_softmax(torch.tensor([[0.0, 2.0, 1.5], [0.0, 0.0, 0.0]]), -1)
    manual = (p.double().exp() * (p.double() - q.double())).sum(-1)
    torch.testing.assert_close(kl_divergence(p, q), manual)
    assert float(kl_divergence(p, q)[0]) > 0.1 and float(kl_divergence(p, q)[1]) == 0.0
    assert float(kl_divergence(p, p).abs().max()) == 0.0

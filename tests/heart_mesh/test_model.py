"""MeshHeart's pieces against independent references: PyG's GCNConv, dense GCN algebra, hand-computed losses."""
import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.nn import GCNConv
from torch_geometric.utils import to_undirected

from stages.heart_mesh.losses import chamfer_loss, kl_divergence, meshheart_loss, uniform_laplacian_smoothing
from stages.heart_mesh.metrics import chamfer
from stages.heart_mesh.model import FrameVAE, MeshHeart, MeshHeartConfig, gcn_layer, normalised_adjacency
from stages.heart_mesh.synthetic import make_template


@pytest.fixture(scope="module")
def sphere():
    mesh = trimesh.creation.icosphere(subdivisions=1)
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.edges_unique, dtype=torch.long)


def test_batched_gcn_layer_equals_pyg_gcnconv_and_dense_algebra(sphere):
    vertices, edges = sphere
    torch.manual_seed(0)
    conv = GCNConv(5, 7)
    torch.nn.init.normal_(conv.bias)
    edge_index = to_undirected(edges.t())
    x = torch.randn(3, len(vertices), 5)
    ours = gcn_layer(conv, x, normalised_adjacency(edge_index, len(vertices)))
    for m in range(3):
        torch.testing.assert_close(ours[m], conv(x[m], edge_index), atol=1e-5, rtol=1e-5)
    adjacency = torch.zeros(len(vertices), len(vertices))
    adjacency[edge_index[0], edge_index[1]] = 1
    adjacency += torch.eye(len(vertices))
    d = adjacency.sum(1).rsqrt()
    dense = (d[:, None] * adjacency * d[None]) @ (x[0] @ conv.lin.weight.t()) + conv.bias
    torch.testing.assert_close(ours[0], dense, atol=1e-5, rtol=1e-5)


def test_laplacian_smoothing_by_hand_and_zero_on_uniform_neighbourhoods(sphere):
    # path graph 0-1-2 on a line: Lv_0 = v1 - v0, Lv_1 = (v0 + v2)/2 - v1 = 0 when collinear-equidistant, Lv_2 = v1 - v2
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]])
    edges = torch.tensor([[0, 1], [1, 2]])
    assert float(uniform_laplacian_smoothing(v, edges)) == pytest.approx((1 + 0 + 1) / 3)
    vertices, sphere_edges = sphere
    bumpy = vertices.clone()
    bumpy[0] *= 1.5
    assert uniform_laplacian_smoothing(bumpy[None], sphere_edges) > uniform_laplacian_smoothing(vertices[None], sphere_edges)


def test_chamfer_loss_is_pytorch3d_sum_of_directions_and_kl_matches_torch_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    loss = chamfer_loss(torch.tensor(a)[None], torch.tensor(b)[None])
    assert float(loss) == pytest.approx(2 * chamfer(a, b))  # our metric is the mean of the two directions
    mu, logvar = torch.randn(2, 8), torch.randn(2, 8)
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                                  torch.distributions.Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(kl_divergence(mu, logvar), reference)


def test_official_loss_runs_mse_by_default_scaled_by_1e3():
    prediction, target = torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3) * 0.1
    edges = torch.tensor([[0, 1], [1, 2], [0, 2]])
    zeros = torch.zeros(1, 4)
    total, rec = meshheart_loss(prediction, target, zeros, zeros, edges, "mse", 0.01, 1.0, 0.0)
    assert float(rec) == pytest.approx(1e3 * 0.01) and float(total) == pytest.approx(float(rec))


def test_meshheart_shapes_conditioning_and_learning():
    template = make_template(1)
    torch.manual_seed(0)
    config = MeshHeartConfig(vertices=126, frames=4, z_dim=16, ff_size=32, num_layers=1)
    model = MeshHeart(config, torch.from_numpy(template.edges))
    vertices = torch.randn(2, 4, 126, 3) * 0.1
    condition = torch.tensor([[1, 0, 0, 0, 0, 0, 1, 0, 70, 160], [0, 0, 0, 0, 0, 1, 0, 1, 90, 180]], dtype=torch.float32)
    out, mu, logvar = model(vertices, condition)
    assert out.shape == (2, 4, 126, 3) and mu.shape == logvar.shape == (2, 16)
    model.eval()
    z = torch.zeros(1, 16)
    assert not torch.allclose(model.decode(z, condition[:1]), model.decode(z, condition[1:]))  # the condition matters
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    edges = torch.from_numpy(template.edges)
    losses = []
    for _ in range(30):
        out, mu, logvar = model(vertices, condition)
        loss, _ = meshheart_loss(out, vertices, mu, logvar, edges, "mse", 0.01, 1.0, 1.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    vae = FrameVAE(126, 3, 32, 64, torch.from_numpy(template.edges))
    frames, mu, _ = vae(vertices[0], condition[:1].expand(4, -1))
    assert frames.shape == (4, 126, 3) and mu.shape == (4, 3)

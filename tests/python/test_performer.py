"""The shared Performer (FAVOR+) of scBERT and CellLM: kernel formulas, the key
stabiliser (per cell vs the official batch-wide maximum), weighted positions, random
re-initialization, gene lists and the official expression preprocessing."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sceval.models._performer import (  # noqa: E402
    PerformerConfig,
    _nn,
    bin_tokens,
    favor_features,
    linear_attention,
    log2_normalized,
    read_gene_list,
    reset_parameters,
)


def _projection(m: int, e: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, e, generator=g)


def test_favor_features_match_the_formula_by_hand():
    """phi(x) = m^-1/2 (exp(W x c - c^2 |x|^2 / 2 - M) + 1e-4), c = e^-1/4, computed
    here element by element in float64."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64)
    w = _projection(5, 4).double()
    c = 4**-0.25
    dash = np.zeros((1, 2, 3, 5))
    for h in range(2):
        for n in range(3):
            for j in range(5):
                dash[0, h, n, j] = sum(c * x[0, h, n, d].item() * w[j, d].item() for d in range(4))
    diag = (x.numpy() ** 2).sum(-1, keepdims=True) / 2 * c**2
    q_ref = 5**-0.5 * (np.exp(dash - diag - dash.max(-1, keepdims=True)) + 1e-4)
    k_ref = 5**-0.5 * (np.exp(dash - diag - dash.max()) + 1e-4)
    q = favor_features(x, w, is_query=True).numpy()
    k = favor_features(x, w, is_query=False).numpy()
    np.testing.assert_allclose(q, q_ref, rtol=1e-12)
    np.testing.assert_allclose(k, k_ref, rtol=1e-12)


def test_linear_attention_is_the_normalized_kernel_product():
    g = torch.Generator().manual_seed(2)
    q = torch.rand(1, 1, 3, 4, generator=g, dtype=torch.float64) + 0.1
    k = torch.rand(1, 1, 5, 4, generator=g, dtype=torch.float64) + 0.1
    v = torch.randn(1, 1, 5, 2, generator=g, dtype=torch.float64)
    a = q[0, 0] @ k[0, 0].T  # unnormalized attention (3 x 5)
    ref = (a / a.sum(1, keepdim=True)) @ v[0, 0]
    np.testing.assert_allclose(linear_attention(q, k, v)[0, 0].numpy(), ref.numpy(), rtol=1e-12)


def test_key_stabiliser_per_cell_reproduces_batch_of_one_and_batch_max_couples():
    """The official key maximum spans the whole batch; with eps = 1e-4 that changes the
    numbers. key_max='cell' gives each cell exactly its batch-of-one result."""
    g = torch.Generator().manual_seed(3)
    w = _projection(16, 8)
    q = torch.randn(2, 2, 6, 8, generator=g)
    k = torch.randn(2, 2, 6, 8, generator=g)
    k[1] *= 3.0  # a cell with much larger keys raises the batch-wide maximum
    v = torch.randn(2, 2, 6, 4, generator=g)

    def attn(qq, kk, vv, key_max):
        qf = favor_features(qq, w, is_query=True)
        kf = favor_features(kk, w, is_query=False, key_max=key_max)
        return linear_attention(qf, kf, vv)

    alone = torch.cat([attn(q[i : i + 1], k[i : i + 1], v[i : i + 1], "batch") for i in range(2)])
    per_cell = attn(q, k, v, "cell")
    coupled = attn(q, k, v, "batch")
    np.testing.assert_allclose(per_cell.numpy(), alone.numpy(), rtol=1e-5, atol=1e-6)
    assert (coupled[0] - alone[0]).abs().max() > 1e-4  # cell 0 moved by cell 1's keys
    with pytest.raises(ValueError, match="key_max must be 'cell' or 'batch'"):
        favor_features(k, w, is_query=False, key_max="row")


def _tiny_model(seed: int = 0, n_pos: int = 12) -> torch.nn.Module:
    cfg = PerformerConfig(
        num_tokens=8, dim=16, depth=2, heads=2, dim_head=8, n_positions=n_pos, max_seq_len=20
    )
    model = _nn().PerformerLM(cfg)
    reset_parameters(model, seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 100)
        model.pos_emb.emb.weight.copy_(torch.randn(n_pos, 16, generator=g, dtype=torch.float64))
    return model.eval()


def test_weighted_position_equals_repeated_identical_positions():
    """One <pad> with weight w computes what w identical padded positions compute (values
    masked, keys in the normaliser); weight-0 batch padding changes nothing."""
    model = _tiny_model()
    real_t = torch.tensor([6, 3, 1, 5])
    real_p = torch.tensor([10, 0, 4, 7])
    n_pad = 9
    full_t = torch.cat([real_t, torch.full((n_pad,), 7)])[None]
    full_p = torch.cat([real_p, torch.full((n_pad,), 11)])[None]
    keep = torch.arange(13)[None] < 4
    with torch.no_grad():
        ref = model.encode(full_t, full_p, v_keep=keep, key_max="batch")[0, :4]
        t = torch.tensor([[6, 3, 1, 5, 7, 7, 7], [6, 2, 7, 7, 7, 7, 7]])
        p = torch.tensor([[10, 0, 4, 7, 11, 11, 11], [10, 3, 11, 11, 11, 11, 11]])
        w = torch.tensor([[1, 1, 1, 1, n_pad, 0, 0], [1, 1, 11, 0, 0, 0, 0]], dtype=torch.float32)
        k = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
        out = model.encode(t, p, weights=w, v_keep=k, key_max="cell")
    np.testing.assert_allclose(out[0, :4].numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_reset_parameters_is_seeded_and_keeps_gene2vec():
    a, b, c = _tiny_model(0), _tiny_model(0), _tiny_model(0)
    pos = a.pos_emb.emb.weight.clone()
    reset_parameters(a, 5)
    reset_parameters(b, 5)
    reset_parameters(c, 6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    key = "performer.net.layers.0.0.fn.fast_attention.projection_matrix"
    assert not torch.equal(sa[key], sc[key])
    assert torch.equal(sa["pos_emb.emb.weight"], pos)
    proj = sa[key].double()  # rows of a Gaussian orthogonal draw: orthogonal within a block
    gram = proj[:8] @ proj[:8].T
    off = gram - torch.diag(torch.diag(gram))
    assert off.abs().max() < 1e-4
    assert math.isclose(float(sa["norm.weight"].mean()), 1.0)


def test_read_gene_list_h5ad_and_text(tmp_path):
    from sceval.testing.scbert import write_gene_reference

    write_gene_reference(tmp_path / "ref.h5ad", ["B", "A", "C"])
    assert read_gene_list(tmp_path / "ref.h5ad") == ["B", "A", "C"]
    (tmp_path / "genes.txt").write_text("B\nA\n\nC\n")
    assert read_gene_list(tmp_path / "genes.txt") == ["B", "A", "C"]


def test_log2_normalized_and_binning_by_hand():
    """Official preprocess.py: reorder to the model genes (first data column of a symbol),
    normalize_total(1e4) over those genes, log1p(base=2); then values > 5 -> 5, floor."""
    import anndata as ad
    import scipy.sparse as sp

    from sceval.data import validate

    counts = np.array([[9994, 5, 6, 7], [19997, 0, 3, 0], [39999, 0, 1, 0]], dtype=np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(counts))
    adata.var_names = ["C", "X", "A", "A-dup"]
    adata.var_names_make_unique()
    adata.layers["counts"] = adata.X.copy()
    rep = validate(adata)
    values, cov = log2_normalized(adata, rep, ["A", "B", "C", "D"], "test")
    assert cov.n_matched == 2 and cov.n_genes == 4
    dense = values.toarray()
    # cell 0: library over model genes = 9994 + 6 = 10,000, so A = 6 and C = 9994
    np.testing.assert_allclose(dense[0], [np.log2(7), 0, np.log2(9995), 0], rtol=1e-6)
    np.testing.assert_allclose(dense[1, 0], np.log2(2.5), rtol=1e-6)  # 3 of 20,000
    np.testing.assert_allclose(dense[2, 0], np.log2(1.25), rtol=1e-6)  # 1 of 40,000
    assert bin_tokens(dense, 5).tolist() == [[2, 0, 5, 0], [1, 0, 5, 0], [0, 0, 5, 0]]

"""nas.data: Fashion-MNIST (IDX files), MNIST-1D (generated), subsets and the errors users see."""
from __future__ import annotations

import gzip
import random
import struct
import sys

import numpy as np
import pytest

import nas.data.idx as idx
from nas.data import load_data, read_fashion_mnist, read_idx, subset
from nas.errors import NASError
from nas.space import load_space


def write_idx(path, a: np.ndarray, code: int = 0x08, compress: bool = True) -> None:
    raw = struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def tiny_fashion(d, n_train: int = 200, n_test: int = 50, seed: int = 0):
    """Four small, valid Fashion-MNIST IDX files in ``d`` (every class present)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_idx(d / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return d


@pytest.fixture
def no_default_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("NAS_DATA", raising=False)
    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "no-debian-package")


def test_shared_fashion_mnist_files_parse(shared_datasets):
    a, files = read_fashion_mnist(str(shared_datasets / "fashion-mnist"))
    assert a["train_images"].shape == (60000, 28, 28) and a["test_images"].shape == (10000, 28, 28)
    assert a["train_images"].dtype == np.uint8 and a["train_labels"].dtype == np.uint8
    assert np.bincount(a["train_labels"]).tolist() == [6000] * 10
    assert np.bincount(a["test_labels"]).tolist() == [1000] * 10
    assert a["train_images"].max() == 255 and a["train_images"].min() == 0
    assert files["test_labels"].name == "t10k-labels-idx1-ubyte.gz"


def test_fashion_mnist_splits_from_nas_data(tmp_path, monkeypatch):
    tiny_fashion(tmp_path / "fashion-mnist")
    monkeypatch.setenv("NAS_DATA", str(tmp_path))
    d = load_data("fashion-mnist", load_space("hybrid-s"))
    assert (len(d.train), len(d.val), len(d.test)) == (180, 20, 50)
    assert d.train.x.shape == (180, 1, 28, 28) and d.train.x.dtype.is_floating_point
    assert d.test.y.dtype == d.train.y.dtype and str(d.test.y.dtype) == "torch.int64"
    assert d.classes == 10 and d.size == (28, 28) and d.dims == 2
    for split, per_class in ((d.train, 18), (d.val, 2), (d.test, 5)):
        assert np.bincount(split.y.numpy(), minlength=10).tolist() == [per_class] * 10
    assert abs(float(d.train.x.mean())) < 1e-3  # normalised with the training split's statistics
    assert d.info["test"] == 50 and "t10k" in d.info["split"]
    # the seeded validation split is the same on every load
    again = load_data("fashion-mnist", load_space("hybrid-s"))
    assert (again.val.x == d.val.x).all()


def test_fashion_mnist_explicit_dir_and_subfolder(tmp_path):
    tiny_fashion(tmp_path / "fashion-mnist")
    for spec in (f"fashion-mnist:{tmp_path}", f"fashion-mnist:{tmp_path / 'fashion-mnist'}"):
        assert len(load_data(spec, load_space("hybrid-s")).test) == 50


def test_missing_files_say_where_and_how(tmp_path, monkeypatch, no_default_locations):
    monkeypatch.setenv("NAS_DATA", str(tmp_path / "empty"))
    with pytest.raises(NASError) as e:
        load_data("fashion-mnist", load_space("hybrid-s"))
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "empty" / "fashion-mnist") in msg and str(idx.DEBIAN_DIR) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "NAS_DATA" in msg
    with pytest.raises(NASError, match="nowhere"):
        load_data(f"fashion-mnist:{tmp_path / 'nowhere'}", load_space("hybrid-s"))


def test_truncated_gzip_names_the_file(tmp_path):
    d = tiny_fashion(tmp_path / "fm")
    f = d / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(NASError, match="train-images-idx3-ubyte.gz: corrupt or truncated"):
        load_data(f"fashion-mnist:{d}", load_space("hybrid-s"))


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda raw: raw[:-5], "truncated: 779 bytes"),
    (lambda raw: raw + b"\0", "has trailing bytes"),
    (lambda raw: b"\x01" + raw[1:], "not an IDX file"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "not an IDX file"),
    (lambda raw: raw[:10], "truncated IDX header"),
    (lambda raw: raw[:3], "shorter than the 4-byte magic"),
])
def test_corrupt_idx_is_one_error(tmp_path, mangle, message):
    p = tmp_path / "x-idx3-ubyte"
    write_idx(p, np.zeros((1, 28, 28), np.uint8), compress=False)
    p.write_bytes(mangle(p.read_bytes()))
    with pytest.raises(NASError) as e:
        read_idx(p, 3)
    assert message in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_idx_dims_counts_and_types_are_checked(tmp_path):
    p = tmp_path / "a.gz"
    write_idx(p, np.arange(6, dtype=">i4").reshape(2, 3), code=0x0C)
    assert read_idx(p, 2).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(NASError, match="2 dimensions; expected 3"):
        read_idx(p, 3)
    d = tiny_fashion(tmp_path / "fm")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(49, np.uint8))
    with pytest.raises(NASError, match="50 images but .*t10k-labels-idx1-ubyte.gz has 49 labels"):
        read_fashion_mnist(str(d))
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(50, 10, np.uint8))
    with pytest.raises(NASError, match="label 10"):
        read_fashion_mnist(str(d))
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((50, 32, 32), np.uint8))
    with pytest.raises(NASError, match="28x28"):
        read_fashion_mnist(str(d))


def test_subset_is_stratified_and_keeps_test(tmp_path):
    d = load_data(f"fashion-mnist:{tiny_fashion(tmp_path / 'fm')}", load_space("hybrid-s"))
    s = subset(d, train=90, val=10, seed=3)
    assert np.bincount(s.train.y.numpy()).tolist() == [9] * 10
    assert np.bincount(s.val.y.numpy()).tolist() == [1] * 10
    assert s.test is d.test and s.info["train"] == 90 and "subset" in s.info
    assert (subset(d, 90, 10, seed=3).train.x == s.train.x).all()
    assert subset(d).train is d.train


def test_mnist1d_generated_locally():
    random.seed(5)
    np.random.seed(5)
    before = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    d = load_data("mnist1d:500", load_space("seq1d"))
    assert (random.random(), np.random.rand()) == before  # the caller's random streams are untouched
    assert d.train.x.shape[1:] == (1, 40) and d.dims == 1 and d.classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (361, 39, 100)
    assert set(np.unique(d.train.y.numpy())) == set(range(10))
    assert "generated locally" in d.info["source"]


def test_mnist1d_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(NASError, match=r"pip install 'nas\[data\]'"):
        load_data("mnist1d", load_space("seq1d"))


@pytest.mark.parametrize("spec", ["mnist1d:ten", "mnist1d:50"])
def test_mnist1d_bad_size(spec):
    with pytest.raises(NASError, match="mnist1d:N with N >= 100"):
        load_data(spec, load_space("seq1d"))


def test_unknown_source_lists_the_new_kinds():
    with pytest.raises(NASError, match=r"fashion-mnist\[:DIR\], mnist1d\[:N\]"):
        load_data("mnist", load_space("hybrid-s"))

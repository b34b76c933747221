"""Figure helpers: deterministic saving, stable colours, and each plot on tiny data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from tase import figures as F  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_figure():
    F.set_style()
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [1, 0, 2], label="curve")
    ax.set_title("title")
    ax.legend()
    return fig


def test_save_writes_png_and_pdf_byte_identical(tmp_path):
    fig = small_figure()
    first = F.save(fig, "curve", tmp_path)
    assert first == [tmp_path / "curve.png", tmp_path / "curve.pdf"]
    first_bytes = [p.read_bytes() for p in first]
    assert first_bytes[0].startswith(b"\x89PNG") and first_bytes[1].startswith(b"%PDF")
    assert b"CreationDate" not in first_bytes[1] and b"Matplotlib" not in first_bytes[1]
    second = F.save(small_figure(), "curve", tmp_path)
    assert [p.read_bytes() for p in second] == first_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.pdf", "curve.png"]  # no temps


def test_save_defaults_to_figures_env(tmp_path, monkeypatch):
    target = tmp_path / "figs" / "nested"
    monkeypatch.setenv("TASE_FIGURES", str(target))
    written = F.save(small_figure(), "counts", formats=("png",))
    assert written == [target.resolve() / "counts.png"]
    assert written[0].exists()


@pytest.mark.parametrize("name", ["", "sub/counts", "counts.png"])
def test_save_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        F.save(small_figure(), name, tmp_path)


def test_save_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="formats"):
        F.save(small_figure(), "x", tmp_path, formats=("png", "jpg"))
    assert not (tmp_path / "x.png").exists()


def test_method_colors_stable_and_distinct():
    names = ["TASE", "simclr", "tase-temperature-only", "bcl", "alpha-0.5"]
    colors = F.method_colors(names)
    assert colors["TASE"] == F.KNOWN_METHOD_COLORS["tase"]
    assert colors["simclr"] == F.KNOWN_METHOD_COLORS["simclr"]
    assert len(set(colors.values())) == len(names)
    assert F.method_colors(list(reversed(names))) == colors  # independent of order
    assert set(F.GROUP_COLORS) == set(F.GROUP_NAMES)


def test_set_style_fixes_font_and_dpi():
    F.set_style(font_size=11, dpi=123)
    assert plt.rcParams["font.size"] == 11
    assert plt.rcParams["savefig.dpi"] == 123


def test_plot_class_counts_bars_sorted_and_coloured():
    counts = np.array([5, 50, 20, 2])
    groups = np.array([2, 0, 1, 2])
    ax = F.plot_class_counts(counts, groups)
    heights = [p.get_height() for p in ax.patches]
    assert heights == [50, 20, 5, 2]
    assert to_hex(ax.patches[0].get_facecolor()) == F.GROUP_COLORS["many"].lower()
    assert to_hex(ax.patches[3].get_facecolor()) == F.GROUP_COLORS["few"].lower()
    assert ax.get_yscale() == "log"
    assert len(ax.get_legend().get_texts()) == 3


def test_plot_per_class_accuracy_one_line_per_method():
    counts = np.array([100, 10, 1])
    ax = F.plot_per_class_accuracy(counts, {"simclr": [0.9, 0.5, 0.1], "tase": [0.8, 0.6, 0.3]})
    assert len(ax.lines) == 2 and ax.get_xscale() == "log"
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 10, 100])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.3, 0.6, 0.8])
    with pytest.raises(ValueError, match="accuracies"):
        F.plot_per_class_accuracy(counts, {"simclr": [0.9, 0.5]})


def test_plot_history():
    history = pd.DataFrame({"epoch": [0, 5, 10], "accuracy": [0.2, 0.4, 0.5], "nmi": [0, 1, 2]})
    ax = F.plot_history(history, ["accuracy", "nmi"])
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 5, 10])
    with pytest.raises(ValueError, match="ari"):
        F.plot_history(history, ["ari"])


def test_plot_confusion_rows_normalised_in_hungarian_order():
    # Table [[6,5,0],[5,0,1],[0,1,4]]: Hungarian c0->k1, c1->k0, c2->k2, so columns k1, k0, k2.
    table = np.array([[6, 5, 0], [5, 0, 1], [0, 1, 4]])
    true = np.repeat(np.repeat(np.arange(3), 3), table.ravel())
    pseudo = np.repeat(np.tile(np.arange(3), 3), table.ravel())
    ax = F.plot_confusion(true, pseudo)
    image = np.asarray(ax.images[0].get_array())
    expected = table[:, [1, 0, 2]] / table.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(image, expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "0", "2"]


def test_confusion_order_puts_unmatched_clusters_last_by_size():
    table = np.array([[0, 4, 0, 1], [3, 0, 2, 0]])  # K = 4 > C = 2; k2 (2) before k3 (1)
    np.testing.assert_array_equal(F.confusion_order(table), [1, 0, 2, 3])


def test_plot_size_vs_size_one_collection_per_group():
    ax = F.plot_size_vs_size([100, 50, 5, 2], [100, 60, 100, 100], [0, 1, 2, 2])
    assert len(ax.collections) == 3
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == 1  # the diagonal


def test_image_grid_places_images_exactly():
    images = np.zeros((5, 3, 2, 2), dtype=np.uint8)
    for i in range(5):
        images[i] = 10 * (i + 1)
    labels = np.array([1, 0, 1, 1, 0])
    grid = F.image_grid(images, labels, class_order=[1, 0], per_class=2, padding=0)
    assert grid.shape == (4, 4, 3)
    assert (grid[0:2, 0:2] == 10).all() and (grid[0:2, 2:4] == 30).all()  # class 1: images 0, 2
    assert (grid[2:4, 0:2] == 20).all() and (grid[2:4, 2:4] == 50).all()  # class 0: images 1, 4
    grey = F.image_grid(images[:, :1], labels, class_order=[0, 2], per_class=3, padding=0)
    assert (grey[0:2, 4:6] == 255).all()  # class 0 has two images: third slot blank
    assert (grey[2:4] == 255).all()  # class 2 has none
    with pytest.raises(ValueError, match="uint8"):
        F.image_grid(images.astype(float), labels, [0])


def test_image_grid_padding_separates_tiles():
    images = np.zeros((4, 3, 2, 2), dtype=np.uint8)
    grid = F.image_grid(images, [0, 0, 1, 1], class_order=[0, 1], per_class=2, padding=1)
    assert grid.shape == (5, 5, 3)
    assert (grid[2, :] == 255).all() and (grid[:, 2] == 255).all()
    assert (grid[3:5, 3:5] == 0).all()


def test_sample_grid_labels_rows():
    images = np.random.default_rng(0).integers(0, 255, (6, 3, 4, 4), dtype=np.uint8)
    ax = F.sample_grid(images, [0, 1, 2, 0, 1, 2], [2, 0], per_class=2, class_names=["a", "b", "c"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a"]
    assert ax.images[0].get_array().shape == (9, 9, 3)
    np.testing.assert_allclose(ax.get_yticks(), [1.5, 6.5])  # row centres: pixels 0-3 and 5-8


def test_bar_with_errors_bar_count_and_gaps():
    table = pd.DataFrame(
        {
            "metric": ["knn", "knn", "lp", "lp", "lp"],
            "method": ["simclr", "tase", "simclr", "tase", "ts"],
            "mean": [50.0, 55.0, 60.0, 62.0, 61.0],
            "std": [1.0, 0.5, 0.2, 0.3, 0.4],
        }
    )
    ax = F.bar_with_errors(table)
    assert len(ax.patches) == 5  # ts has no knn bar
    assert sorted(p.get_height() for p in ax.patches) == [50, 55, 60, 61, 62]
    error_bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(error_bars) == 3
    ts_bar = max(ax.patches, key=lambda p: p.get_x())
    assert ts_bar.get_height() == 61.0
    assert ts_bar.get_x() + ts_bar.get_width() / 2 == pytest.approx(1 + 0.8 / 3)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["knn", "lp"]


@pytest.mark.parametrize("kind", ["class", "group", "continuous"])
def test_scatter_embedding(kind):
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(30, 2))
    values = rng.random(30) if kind == "continuous" else rng.integers(0, 3, 30)
    ax = F.scatter_embedding(xy, values, kind=kind, label="tau")
    assert len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == 30
    if kind == "continuous":
        assert len(ax.figure.axes) == 2  # colour bar
    else:
        assert len(ax.get_legend().get_texts()) == len(np.unique(values))


def test_scatter_embedding_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        F.scatter_embedding(np.zeros((3, 2)), [0, 1, 2], kind="hue")
    with pytest.raises(ValueError, match="N x 2"):
        F.scatter_embedding(np.zeros((3, 3)), [0, 1, 2])

"""Tests of the voxel pictures in common/runlog.py: three orthogonal projections per shape, one PNG per set."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from common.domains import DOMAINS
from common.domains.voxel import (VOXEL_TILE_GAP_PX, VOXEL_VIEW_SEP_PX, save_voxel_grid, voxel_projections, voxel_tile,
                                  voxel_view_px)

GAP, SEP = VOXEL_TILE_GAP_PX, VOXEL_VIEW_SEP_PX


def _cube(n=16, lo=4, hi=12):
    v = torch.zeros(1, n, n, n)
    v[:, lo:hi, lo:hi, lo:hi] = 1
    return v


def _plate(n=16, depth=7, lo=2, hi=14):
    """A plate one voxel thin along D, filling [lo, hi) along H and W."""
    v = torch.zeros(1, n, n, n)
    v[:, depth, lo:hi, lo:hi] = 1
    return v


def _square(n, lo, hi):
    m = torch.zeros(n, n)
    m[lo:hi, lo:hi] = 1
    return m


def _read(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("L")).astype(np.float32) / 255


def _tile_at(grid, row, col, view_px):
    tile_w = 3 * view_px + 2 * SEP
    top, left = GAP + row * (view_px + GAP), GAP + col * (tile_w + GAP)
    return grid[top:top + view_px, left:left + tile_w]


def _views_of(tile, view_px):
    return [tile[:, i * (view_px + SEP):i * (view_px + SEP) + view_px] for i in range(3)]


def _upscaled(view, scale):
    return view.repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy()


def test_cube_projections_are_three_squares():
    for view in voxel_projections(_cube()):
        torch.testing.assert_close(view, _square(16, 4, 12))


def test_plate_projections_are_a_square_and_two_lines():
    over_d, over_h, over_w = voxel_projections(_plate())
    torch.testing.assert_close(over_d, _square(16, 2, 14))  # seen face on: the filled plate
    line = torch.zeros(16, 16)
    line[7, 2:14] = 1  # seen edge on: one row (its D index) across its H or W extent
    torch.testing.assert_close(over_h, line)
    torch.testing.assert_close(over_w, line)
    assert over_d.sum() == 144 and over_h.sum() == over_w.sum() == 12


def test_projections_of_a_non_cubic_volume_and_of_channels():
    v = torch.zeros(2, 4, 6, 8)
    v[1, 3, 5, 7] = 1
    over_d, over_h, over_w = voxel_projections(v)
    assert over_d.shape == (6, 8) and over_h.shape == (4, 8) and over_w.shape == (4, 6)
    assert over_d[5, 7] == over_h[3, 7] == over_w[3, 5] == 1 and over_d.sum() == 1
    with pytest.raises(ValueError, match="volume"):
        voxel_projections(torch.zeros(8, 8))


@pytest.mark.parametrize("side, px", [(16, 48), (32, 64), (8, 48), (20, 60), (48, 48), (64, 64)])
def test_small_volumes_are_upscaled_to_readable_views(side, px):
    assert voxel_view_px((2, 1, side, side, side)) == px
    assert voxel_tile(torch.zeros(1, side, side, side), px).shape == (px, 3 * px + 2 * SEP)


def test_png_holds_the_projections_of_cube_and_plate(tmp_path):
    path = str(tmp_path / "imgs" / "voxels.png")
    volumes = torch.stack([_cube(), _plate()])  # (2, 1, 16, 16, 16)
    assert save_voxel_grid(volumes, torch.tensor([0, 1]), path, per_class=1) == path
    grid = _read(path)
    view_px, scale = 48, 3  # 16^3 drawn 3x
    assert grid.shape == (2 * (view_px + GAP) + GAP, 3 * view_px + 2 * SEP + 2 * GAP)
    cube_views = _views_of(_tile_at(grid, 0, 0, view_px), view_px)
    for view in cube_views:
        np.testing.assert_array_equal(view, _upscaled(_square(16, 4, 12), scale))
    plate_views = _views_of(_tile_at(grid, 1, 0, view_px), view_px)
    np.testing.assert_array_equal(plate_views[0], _upscaled(_square(16, 2, 14), scale))
    line = torch.zeros(16, 16)
    line[7, 2:14] = 1
    for view in plate_views[1:]:
        np.testing.assert_array_equal(view, _upscaled(line, scale))
        assert view.sum() == 12 * scale * scale  # a line 3 px thick, not a square
    # the separators inside a tile are thin grey lines; the gaps between tiles are white
    tile = _tile_at(grid, 0, 0, view_px)
    for i in (1, 2):
        col = tile[:, i * (view_px + SEP) - SEP:i * (view_px + SEP)]
        assert 0.4 < col.min() <= col.max() < 0.6
    assert (grid[:GAP] == 1).all() and (grid[:, :GAP] == 1).all()
    assert (grid[GAP + view_px:2 * GAP + view_px] == 1).all()
    assert not any(name.startswith(".tmp") for name in os.listdir(tmp_path / "imgs"))


def test_grid_size_rows_per_class_and_padding(tmp_path):
    counts = {0: 2, 3: 4, 5: 6}  # class 5 has more shapes than per_class: only 4 are drawn
    volumes, labels = [], []
    for c, n in counts.items():
        volumes += [_cube()] * n
        labels += [c] * n
    path = str(tmp_path / "grid.png")
    save_voxel_grid(torch.stack(volumes), torch.tensor(labels), path, per_class=4)
    grid = _read(path)
    view_px, tile_w = 48, 3 * 48 + 2 * SEP
    assert grid.shape == (3 * (view_px + GAP) + GAP, 4 * (tile_w + GAP) + GAP)
    cube = _upscaled(_square(16, 4, 12), 3)
    for row, n in enumerate(min(n, 4) for n in counts.values()):
        for col in range(4):
            views = _views_of(_tile_at(grid, row, col, view_px), view_px)
            for view in views:
                if col < n:
                    np.testing.assert_array_equal(view, cube)
                else:  # padding: an empty tile
                    assert view.max() == 0


def test_mean_std_are_undone_and_values_clamped(tmp_path):
    v = torch.full((1, 1, 8, 8, 8), -1.0)  # normalised with mean 0.5, std 0.5: displays as 0
    v[0, 0, 2:6, 2:6, 2:6] = 1.0  # displays as 1
    v[0, 0, 0, 0, 0] = 3.0  # displays as 2: clamped to 1
    path = str(tmp_path / "norm.png")
    save_voxel_grid(v, torch.tensor([0]), path, per_class=1, mean=[0.5], std=[0.5])
    views = _views_of(_tile_at(_read(path), 0, 0, 48), 48)
    expected = _square(8, 2, 6)
    expected[0, 0] = 1
    for view in views:
        np.testing.assert_array_equal(view, _upscaled(expected, 6))
    with pytest.raises(ValueError, match=r"\(n, C, D, H, W\)"):
        save_voxel_grid(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), path)


def test_the_voxel_domain_draws_one_png(tmp_path):
    real = SimpleNamespace(domain="voxel", mean=[0.0], std=[1.0], zca=None)
    volumes = torch.stack([_cube(), _plate(), _cube()])
    folder = str(tmp_path / "imgs")
    paths = DOMAINS["voxel"].save_visuals(volumes, torch.tensor([0, 0, 1]), folder, "syn_0100", real)
    assert paths == [os.path.join(folder, "syn_0100.png")]
    assert sorted(os.listdir(folder)) == ["syn_0100.png"]
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(paths[0]) as im:
        im.verify()
    grid = _read(paths[0])
    tile_w = 3 * 48 + 2 * SEP
    assert grid.shape == (2 * (48 + GAP) + GAP, 2 * (tile_w + GAP) + GAP)  # two classes; class 0 fills 2 columns
    plate = _views_of(_tile_at(grid, 0, 1, 48), 48)[0]
    np.testing.assert_array_equal(plate, _upscaled(_square(16, 2, 14), 3))

"""Tests for data.recall_video, the memory-recall benchmark video: the object hides for exactly
`hidden` frames, comes back where it left on the frame the benchmark expects, is seen whole before it hides,
and changing its look changes nothing else.

    python -m pytest -q tests/test_recall_video.py
"""
import pytest
import torch

import data

# (frames, size, after): the benchmark's default and a few other shapes, all small for the CPU.
CASES = [(18, 32, 2), (16, 16, 1), (20, 48, 3), (14, 8, 0)]
OUTLINE = 0.05 * 2 - 1  # sprite_pattern's outline colour, mapped to [-1, 1]


def mask_columns(mask):
    """(S, S) bool -> the sorted list of frame columns that hold an object pixel."""
    return mask.any(dim=0).nonzero().flatten().tolist()


def full_view_frames(masks, width):
    """Indices of the frames in which all `width` columns of the object are visible."""
    return [t for t in range(len(masks)) if len(mask_columns(masks[t])) == width]


def test_shape_dtype_range_and_determinism():
    for frames, size, after in CASES:
        video, mask = data.recall_video(seed=3, frames=frames, size=size, hidden=2, after=after)
        assert video.shape == (frames, 3, size, size) and video.dtype == torch.float32
        assert mask.shape == (frames, size, size) and mask.dtype == torch.bool
        assert video.min() >= -1 and video.max() <= 1
        assert video.max() - video.min() > 1.0  # a texture, not a flat grey
        again_video, again_mask = data.recall_video(seed=3, frames=frames, size=size, hidden=2, after=after)
        assert torch.equal(video, again_video) and torch.equal(mask, again_mask)
    assert not torch.equal(data.recall_video(3, 18, 32, 4)[0], data.recall_video(4, 18, 32, 4)[0])
    assert torch.equal(data.recall_video(5, 18, 32, 4)[0], data.recall_video(5, 18, 32, 4, look=5)[0])


def test_hidden_exactly_then_comes_back_through_the_edge_it_left():
    for frames, size, after in CASES:
        speed, width = data.recall_speed_and_width(size)
        enter = frames - after - 1
        for hidden in sorted({1, 2, data.recall_hidden_range(frames, size, after)}):
            for seed in range(4):
                _, mask = data.recall_video(seed, frames, size, hidden, after=after)  # (T, S, S)
                visible = mask.flatten(1).any(dim=1).tolist()  # (T,)
                assert visible[enter - hidden - 1], "visible at the right edge just before hiding"
                assert mask_columns(mask[enter - hidden - 1])[-1] == size - 1
                assert not any(visible[enter - hidden : enter]), "hidden for exactly `hidden` frames"
                assert all(visible[enter:])
                # Back through the right edge, `speed` more columns each frame, mirroring the
                # exit: every column of a rectangle or an ellipse holds a pixel, so exact for both.
                for step, t in enumerate(range(enter, frames)):
                    assert mask_columns(mask[t]) == list(range(size - speed * (step + 1), size))[:width]
                    assert torch.equal(mask[t], mask[enter - hidden - 1 - step])


def test_object_seen_whole_before_it_hides():
    for frames, size, after in CASES:
        speed, width = data.recall_speed_and_width(size)
        enter = frames - after - 1
        for hidden in range(1, data.recall_hidden_range(frames, size, after) + 1):
            _, mask = data.recall_video(0, frames, size, hidden, after=after)
            before = full_view_frames(mask[: enter - hidden], width)
            assert len(before) >= data.RECALL_FULL_VIEWS


def test_hidden_range_is_the_largest_valid_hidden():
    # At frames=18, S=32: speed 2, width 8, re-entry at frame 15; the object is last whole 4
    # frames before it hides and must be whole in 2 frames, so hidden <= 15 - 4 - 1 = 10.
    assert data.recall_hidden_range(18, 32) == 10
    for frames, size, after in CASES:
        speed, width = data.recall_speed_and_width(size)
        enter = frames - after - 1
        largest = data.recall_hidden_range(frames, size, after)
        assert largest >= 1
        _, longest = data.recall_video(1, frames, size, largest, after=after)
        # On its last pass before hiding, one more hidden frame only shifts the object's path
        # one frame earlier (checked on largest - 1 vs largest), so at the largest hidden frame
        # 0 must be the first of exactly RECALL_FULL_VIEWS whole views: one more would drop it.
        _, shorter = data.recall_video(1, frames, size, largest - 1, after=after)
        assert torch.equal(longest[: enter - largest], shorter[1 : enter - largest + 1])
        assert full_view_frames(longest[: enter - largest], width)[0] == 0
        assert len(full_view_frames(longest[: enter - largest], width)) == data.RECALL_FULL_VIEWS
        with pytest.raises(data.DataError, match="hidden"):
            data.recall_video(1, frames, size, largest + 1, after=after)


def test_bad_inputs_raise_one_line_errors():
    for kwargs in [dict(hidden=0), dict(hidden=-1), dict(hidden=11), dict(size=6), dict(frames=6)]:
        arguments = dict(seed=0, frames=18, size=32, hidden=3) | kwargs
        with pytest.raises(data.DataError) as error:
            data.recall_video(**arguments)
        assert "\n" not in str(error.value) and ": " in str(error.value)
    with pytest.raises(data.DataError, match="frames >= 9"):
        data.recall_hidden_range(8, 32)


def test_outside_the_object_every_frame_is_the_static_background():
    for frames, size, after in CASES:
        enter = frames - after - 1
        video, mask = data.recall_video(2, frames, size, hidden=2, after=after)
        background = video[enter - 1]  # a hidden frame: (3, S, S)
        assert not mask[enter - 1].any()
        for t in range(frames):
            outside = ~mask[t]  # (S, S)
            assert torch.equal(video[t][:, outside], background[:, outside])
            # The object stands out from the texture it covers.
            assert (video[t][:, mask[t]] - background[:, mask[t]]).abs().mean() > 0.1 or not mask[t].any()


def test_a_different_look_changes_only_the_object():
    for frames, size, after in CASES:
        speed, width = data.recall_speed_and_width(size)
        for seed, look in [(0, 100), (1, 7), (6, 2)]:
            video_a, mask_a = data.recall_video(seed, frames, size, hidden=3, after=after)
            video_b, mask_b = data.recall_video(seed, frames, size, hidden=3, look=look, after=after)
            neither = ~(mask_a | mask_b)  # (T, S, S)
            assert torch.equal(video_a.permute(0, 2, 3, 1)[neither], video_b.permute(0, 2, 3, 1)[neither])
            # Same place and size in every frame; only the mask's shape (rectangle or
            # ellipse) may differ, and an ellipse touches every row only where it is whole.
            for t in range(frames):
                assert mask_columns(mask_a[t]) == mask_columns(mask_b[t])
            assert torch.equal(mask_a.any(dim=2).any(dim=0), mask_b.any(dim=2).any(dim=0))  # rows, (S,)
            for t in set(full_view_frames(mask_a, width)) & set(full_view_frames(mask_b, width)):
                assert torch.equal(mask_a[t].any(dim=1), mask_b[t].any(dim=1))
            # Inside the object the looks differ, except on the near-black outline that every
            # sprite gets (at S=8 the outline can be the whole object).
            outline_a, outline_b = (video.amax(dim=1) < OUTLINE + 1e-6 for video in (video_a, video_b))  # (T, S, S)
            patterned = mask_a & mask_b & ~(outline_a & outline_b)  # (T, S, S)
            differs = (video_a - video_b).abs().amax(dim=1)[patterned] > 0.05  # (pixels,)
            assert size < 16 or patterned.sum() >= 50
            assert differs.float().mean() > 0.9 or not patterned.any()

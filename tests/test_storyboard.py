"""storyboard.py and captions.py: stories A, B, (C), A with per-frame captions; the cut back
restores A's look, another look of A is far from it; the timing can be forced; written stories
parse or fail in one line; real clips stitch into the same format.

    python -m pytest tests/test_storyboard.py -q
"""
import sys

import numpy as np
import pytest
import torch

import storyboard as sb
from captions import (VOCAB_SIZE, VOCABULARY, decode_caption, encode_caption, format_story,
                      latent_captions, parse_story, real_words)
from config import CAPTION_LENGTH
from metrics import psnr

SEEDS = range(30)


def runs_of(shot: torch.Tensor) -> list:
    """(T,) shot ids -> the shot of each run of equal ids, e.g. [0, 1, 2, 0]."""
    return [int(s) for k, s in enumerate(shot) if k == 0 or s != shot[k - 1]]


def aligned_exactly(a: torch.Tensor, b: torch.Tensor) -> bool:
    """b equals a moved by at most 1 px on each axis (a drift step), on the interior both see."""
    return any(torch.equal(b[:, 1:-1, 1:-1], a[:, 1 + dy:a.shape[1] - 1 + dy, 1 + dx:a.shape[2] - 1 + dx])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_story_shapes_dtypes_and_range(size):
    story = sb.storyboard_video(3, 18, size)
    assert story["video"].shape == (18, 3, size, size) and story["video"].dtype == torch.float32
    assert story["captions"].shape == (18, CAPTION_LENGTH) and story["captions"].dtype == torch.long
    assert story["shot"].shape == (18,) and story["shot"].dtype == torch.long
    assert -1 <= story["video"].min() and story["video"].max() <= 1 and story["video"].max() - story["video"].min() > 1
    assert isinstance(story["cut_back"], int) and isinstance(story["gap"], int)


def test_stories_go_a_b_maybe_c_then_back_to_a_with_captions_that_change_at_cuts():
    batch = sb.storyboard_videos(SEEDS, 18, 32)
    with_c = 0
    for k in range(len(SEEDS)):
        shot, captions, cut_back = batch["shot"][k], batch["captions"][k], int(batch["cut_back"][k])
        assert runs_of(shot) in ([0, 1, 0], [0, 1, 2, 0])
        with_c += runs_of(shot) == [0, 1, 2, 0]
        assert shot[cut_back] == 0 and shot[cut_back - 1] != 0
        for t in range(1, 18):   # the caption changes exactly at a cut
            assert torch.equal(captions[t], captions[t - 1]) == bool(shot[t] == shot[t - 1])
        assert torch.equal(captions[cut_back], captions[0])       # back to A's caption
        assert all(len(decode_caption(c).split()) == 4 for c in captions)
    assert 0 < with_c < len(SEEDS)


def test_default_timing_puts_a_beyond_a_two_frame_window_and_the_cut_back_anywhere():
    rng, cut_backs = np.random.default_rng(0), set()
    for _ in range(300):                                  # the timing alone: no pictures drawn
        first, away_b, away_c, cut_back = sb.story_timing(rng, 18)
        shot, clock = sb.story_layout(first, away_b, away_c, 18)
        gap = cut_back - first + 1
        assert gap >= sb.MIN_AWAY + 1                     # at least 3 frames of B (and C): A is not in the window
        assert shot[cut_back - gap] == 0 and (shot[cut_back - gap + 1:cut_back] != 0).all() and shot[cut_back] == 0
        assert clock[cut_back] == clock[cut_back - gap] + 1   # A's clock paused while away
        cut_backs.add(cut_back)
    assert cut_backs == set(range(sb.MIN_FIRST + sb.MIN_AWAY, 18))   # from early to the very last frame


def test_min_first_and_min_away_reach_the_benchmarks_edges_and_the_defaults_never_do():
    def timings(**edges):
        rng = np.random.default_rng(1)
        return [sb.story_timing(rng, 18, **edges) for _ in range(300)]
    default = timings()
    assert min(t[0] for t in default) == sb.MIN_FIRST == 2
    assert min(t[3] - t[0] + 1 for t in default) == sb.MIN_AWAY + 1 == 4
    edges = timings(min_first=1, min_away=2)
    singles = sum(t[0] == 1 for t in edges) / 300        # A seen for one frame (the benchmark's gap 16)
    shortest = sum(t[3] - t[0] + 1 == 3 for t in edges) / 300   # B for two frames (its gap 3)
    assert 0.12 < singles < 0.35 and 0.12 < shortest < 0.35   # about a fifth each
    story = sb.storyboard_videos(SEEDS, 18, 32, min_first=1)
    first = story["cut_back"] - story["gap"] + 1
    assert (first == 1).any() and ((story["shot"][first == 1][:, :2]) == torch.tensor([0, 1])).all()
    for edge in ({"min_first": 0}, {"min_away": 0}):
        with pytest.raises(sb.DataError, match="min_first and min_away"):
            sb.story_timing(np.random.default_rng(0), 18, **edge)


def test_the_cut_back_restores_a_and_another_look_of_a_is_far():
    same, other = [], []
    for seed in SEEDS:
        story, chance = sb.storyboard_video(seed, 18, 32), sb.other_look(seed, 18, 32)
        back, last_a = story["cut_back"], story["cut_back"] - story["gap"]
        # The return is the next frame of A's own shot: A's last frame, moved by at most one drift step.
        assert aligned_exactly(story["video"][last_a], story["video"][back])
        same.append(psnr(story["video"][back], story["video"][last_a]))
        other.append(psnr(chance["video"][back], story["video"][back]))
        # other_look: the same story (captions, timing, B and C), another look of A only.
        assert torch.equal(chance["captions"], story["captions"]) and torch.equal(chance["shot"], story["shot"])
        away = story["shot"] != 0
        assert torch.equal(chance["video"][away], story["video"][away])
    same, other = torch.stack(same), torch.stack(other)
    assert (same > 25).float().mean() > 0.8          # most returns are exact (still, or no drift step due)
    assert other.mean() < 15 and other.max() < 15    # another look of the same caption is far


def test_a_is_one_continuous_shot_whose_clock_pauses_while_away():
    story = sb.storyboard_video(5, 18, 32)
    a_frames = story["video"][story["shot"] == 0]
    for previous, current in zip(a_frames[:-1], a_frames[1:]):
        assert aligned_exactly(previous, current)


@pytest.mark.parametrize("gap", [2, 4, 9, 16])
def test_forced_gap_and_cut_back_give_a_last_sight_exactly_gap_frames_before_the_return(gap):
    story = sb.storyboard_video(7, 18, 32, cut_back=16, gap=gap)
    shot = story["shot"]
    assert story["cut_back"] == 16 and story["gap"] == gap
    assert shot[16 - gap] == 0 and (shot[16 - gap + 1:16] != 0).all() and (shot[16:] == 0).all()
    free = sb.storyboard_video(7, 18, 32)                     # forcing the timing changes no caption, no look
    assert torch.equal(story["captions"][0], free["captions"][0]) and torch.equal(story["video"][0], free["video"][0])
    only_gap = sb.storyboard_video(8, 18, 32, gap=gap)
    assert only_gap["gap"] == gap and only_gap["shot"][only_gap["cut_back"] - gap] == 0
    only_back = sb.storyboard_video(9, 18, 32, cut_back=17)
    assert only_back["cut_back"] == 17 and only_back["shot"][17] == 0 and only_back["shot"][16] != 0


@pytest.mark.parametrize("kwargs", [dict(cut_back=18), dict(cut_back=1), dict(gap=1), dict(cut_back=5, gap=6),
                                    dict(frames=5), dict(size=4)])
def test_impossible_timing_is_a_one_line_error(kwargs):
    args = {"seed": 0, "frames": 18, "size": 32, **kwargs}
    with pytest.raises(ValueError) as error:
        sb.storyboard_video(**args)
    assert "\n" not in str(error.value)


def test_same_seed_same_story_other_seeds_differ():
    a, b = sb.storyboard_video(11, 18, 32), sb.storyboard_video(11, 18, 32)
    assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)
    assert not torch.equal(a["video"], sb.storyboard_video(12, 18, 32)["video"])
    batch = sb.storyboard_videos([11, 4], 18, 32)
    assert torch.equal(batch["video"][0], a["video"]) and batch["cut_back"].tolist()[0] == a["cut_back"]
    with pytest.raises(ValueError):
        sb.other_look(11, 18, 32, look=0)


def test_one_caption_has_many_looks():
    """Two shots of one caption, drawn from two look seeds, are far apart (the caption pins no detail)."""
    caption = ("red", "stripes", "blue", "disc")
    times = np.arange(1)
    looks = [torch.from_numpy(sb.shot_frames(caption, [0, look], 32, times)[0]).permute(2, 0, 1) * 2 - 1
             for look in range(8)]
    distances = [psnr(looks[i], looks[j]) for i in range(8) for j in range(i)]
    assert torch.stack(distances).mean() < 15


# ----------------------------------------------------------------------------- captions
def test_encode_and_decode_captions():
    ids = encode_caption("Red stripes,  blue disc")
    assert ids.shape == (CAPTION_LENGTH,) and ids.dtype == torch.long
    assert (ids[4:] == 0).all() and (ids[:4] > 0).all()
    assert decode_caption(ids) == "red stripes, blue disc"
    assert (encode_caption("") == 0).all() and decode_caption(encode_caption("real3")) == "real3"
    assert VOCAB_SIZE == len(VOCABULARY) and 20 <= VOCAB_SIZE - 1 <= 40


def test_unknown_caption_word_is_one_line_naming_it():
    with pytest.raises(ValueError) as error:
        encode_caption("red stripes, blue dragon")
    message = str(error.value)
    assert "'dragon'" in message and "\n" not in message and "red" in message and "stripes" in message
    with pytest.raises(ValueError):
        encode_caption(" ".join(["red"] * (CAPTION_LENGTH + 1)))


def test_latent_captions_take_each_groups_first_frame():
    captions = torch.arange(6)[:, None].expand(6, CAPTION_LENGTH)
    assert latent_captions(captions[None], 2)[0, :, 0].tolist() == [0, 2, 4]


# ----------------------------------------------------------------------------- written stories
def test_parse_story_reads_ranges_newlines_files_and_round_trips(tmp_path):
    text = "0-8: red stripes, blue disc | 8-16: green dots | 16-24: red stripes, blue disc"
    captions = parse_story(text, 24)
    assert captions.shape == (24, CAPTION_LENGTH) and captions.dtype == torch.long
    assert torch.equal(captions[0], encode_caption("red stripes blue disc"))
    assert torch.equal(captions[8], encode_caption("green dots")) and torch.equal(captions[16], captions[7])
    assert format_story(captions) == text
    shuffled = "16-24: red stripes, blue disc\n# the cut away\n8-16: green dots\n0-8: red stripes, blue disc\n"
    assert torch.equal(parse_story(shuffled, 24), captions)
    path = tmp_path / "story.txt"
    path.write_text(shuffled)
    assert torch.equal(parse_story(str(path), 24), captions)
    assert (parse_story("0-3: | 3-4: teal grid", 4)[:3] == 0).all()      # an empty caption is the null one
    story = sb.storyboard_video(2, 18, 32)
    assert torch.equal(parse_story(format_story(story["captions"]), 18), story["captions"])


@pytest.mark.parametrize("text, frames, words", [
    ("0-8: red stripes | 10-16: green dots", 16, "8-10"),               # a gap
    ("0-8: red stripes | 6-16: green dots", 16, "overlaps"),            # an overlap
    ("0-8: red stripes | 8-20: green dots", 16, "beyond"),              # beyond the frames
    ("0-8: red stripes | 8-12: green dots", 16, "stops before"),        # frames not covered
    ("2-16: red stripes", 16, "0-2"),                                   # the start not covered
    ("0-8 red stripes", 8, "START-END"),                                # no colon
    ("0-8: red stripes, blue dragon", 8, "dragon"),                     # an unknown word
    ("4-4: red", 8, "empty"),                                           # an empty range
    ("", 8, "empty"),                                                   # no story at all
    ("missing_story.txt", 8, "does not exist"),                         # a file that is not there
])
def test_bad_stories_are_one_line_errors(text, frames, words):
    with pytest.raises(ValueError) as error:
        parse_story(text, frames)
    assert words in str(error.value) and "\n" not in str(error.value)


# ----------------------------------------------------------------------------- real clips
def fake_clips(names, clips=2, frames=18, size=16):
    """{name: (N, T, 3, S, S)} whose pixels say where they come from: channel 0 = the file's index,
    channel 1 = the clip, channel 2 = the frame (scaled into [-1, 1])."""
    out = {}
    for f, name in enumerate(names):
        video = torch.zeros(clips, frames, 3, size, size)
        video[:, :, 0] = f / 10
        video[:, :, 1] = torch.arange(clips)[:, None, None, None] / 10
        video[:, :, 2] = torch.arange(frames)[None, :, None, None] / 100
        out[name] = video
    return out


def test_stitch_real_cuts_shots_out_of_real_clips_and_captions_them_by_file():
    clips = fake_clips(["dog.mp4", "cups.mp4", "coffee.mp4"])
    words = real_words(clips)
    assert words == {"coffee.mp4": "real0", "cups.mp4": "real1", "dog.mp4": "real2"}
    for seed in range(12):
        story = sb.stitch_real(clips, seed, 18)
        video, shot, captions = story["video"], story["shot"], story["captions"]
        assert video.shape == (18, 3, 16, 16) and captions.shape == (18, CAPTION_LENGTH)
        assert runs_of(shot) in ([0, 1, 0], [0, 1, 2, 0]) and shot[story["cut_back"]] == 0
        files = {}
        for t in range(18):
            file = round(video[t, 0, 0, 0].item() * 10)
            files.setdefault(int(shot[t]), set()).add(file)
            name = list(clips)[file]
            assert decode_caption(captions[t]) == words[name]
        assert all(len(f) == 1 for f in files.values()) and len(set.union(*files.values())) == len(files)
        a_times = (video[shot == 0, 2, 0, 0] * 100).round()
        assert (a_times[1:] - a_times[:-1] == 1).all()          # A continues its own clip after the cut back
        assert len(set(video[shot == 0, 1, 0, 0].tolist())) == 1  # one clip of one file
    other = sb.stitch_real(clips, 0, 18, a_look=1)
    assert torch.equal(other["captions"], sb.stitch_real(clips, 0, 18)["captions"])


def test_stitch_real_needs_two_files_and_long_enough_clips():
    two = sb.stitch_real(fake_clips(["a.mp4", "b.mp4"]), 0, 18)
    assert runs_of(two["shot"]) == [0, 1, 0]                   # no third file: no C
    with pytest.raises(ValueError, match="at least 2 video files"):
        sb.stitch_real(fake_clips(["a.mp4"]), 0, 18)
    with pytest.raises(ValueError, match="frames"):
        sb.stitch_real(fake_clips(["a.mp4", "b.mp4"], frames=4), 0, 18)


def test_preview_prints_stories_that_parse_and_writes_its_pictures(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["storyboard.py", "--stories", "2", "--out", str(tmp_path)])
    sb.main()
    stories = [line.split("): ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("story ")]
    assert len(stories) == 2
    assert torch.equal(parse_story(stories[0], 18), sb.storyboard_video(0, 18, 32)["captions"])
    for name in ("storyboard.png", "storyboard.gif", "storyboard.mp4"):
        assert (tmp_path / name).stat().st_size > 1000

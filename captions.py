"""Captions: the words of the text condition c, and stories written as captions per frame range.

In G(x_t, t, c, phi(H)) the caption c says *what* a chunk shows (docs/paper.md, "The starting
point"); in the storyboard world (storyboard.py) it is four coarse words, "red stripes, blue
disc", the background's colour and pattern kind and the main object's colour and kind. Here
they become token ids for dit.py's tiny text encoder, and back; a story ("0-8: red stripes, blue
disc | 8-16: green dots, white cross | ...") becomes one caption per frame for sample.py
--generate, and back. Real clips have no captions: each source file gets a reserved word.

    python sample.py --ckpt RUN/ckpt.pt --generate --story "0-4: red stripes, blue disc | 4-16: green dots"

Letters: N stories, T frames, L caption length (tokens, config.CAPTION_LENGTH).
"""
import os
import re

import torch

from config import CAPTION_LENGTH, CAPTION_VOCAB
from data import DataError

# ----------------------------------------------------------------------------- the vocabulary
COLOURS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "white", "black")
PATTERNS = ("stripes", "checks", "dots", "waves", "grid")
OBJECTS = ("disc", "square", "ring", "triangle", "cross", "diamond")
# Reserved words for real clips, which have no captions: the k-th source file, in sorted order
# of the file names, is "real<k>" (wrapping after 12 files). See real_words.
REAL_WORDS = tuple(f"real{k}" for k in range(12))
VOCABULARY = ("<pad>",) + COLOURS + PATTERNS + OBJECTS + REAL_WORDS
VOCAB_SIZE = len(VOCABULARY)   # 34 token ids, 0 the padding (L = config.CAPTION_LENGTH per caption)
assert VOCAB_SIZE <= CAPTION_VOCAB, "dit.py's text encoder knows config.CAPTION_VOCAB token ids"
WORD_ID = {word: index for index, word in enumerate(VOCABULARY) if index > 0}

def encode_caption(text: str) -> torch.Tensor:
    """"red stripes, blue disc" -> (L,) long token ids, 0-padded. Words are split on spaces and
    commas, case-insensitively; "" is the all-padding (null) caption."""
    words = [word for word in re.split(r"[\s,]+", text.strip().lower()) if word]
    for word in words:
        if word not in WORD_ID:
            raise DataError(f"unknown caption word {word!r}: use words like {', '.join(COLOURS[:4])}, "
                            f"{', '.join(PATTERNS[:3])}, {', '.join(OBJECTS[:3])} (captions.VOCABULARY)")
    if len(words) > CAPTION_LENGTH:
        raise DataError(f"caption {text!r} has {len(words)} words, more than the {CAPTION_LENGTH} a caption holds")
    ids = torch.zeros(CAPTION_LENGTH, dtype=torch.long)
    ids[:len(words)] = torch.tensor([WORD_ID[word] for word in words], dtype=torch.long)
    return ids


def decode_caption(ids) -> str:
    """(L,) token ids -> "red stripes, blue disc" (padding dropped; a comma before each colour
    that follows another word, so the background and the object read as two phrases)."""
    words = [VOCABULARY[int(i)] for i in ids if int(i) > 0]
    text = ""
    for k, word in enumerate(words):
        text += ("" if k == 0 else ", " if word in COLOURS and words[k - 1] not in COLOURS else " ") + word
    return text


def latent_captions(captions: torch.Tensor, vae_time: int) -> torch.Tensor:
    """(..., T, L) frame captions -> (..., T/vt, L): each latent frame takes its first frame's caption."""
    return captions[..., ::vae_time, :]


def cut_back_frames(captions: torch.Tensor) -> torch.Tensor:
    """(N, T, L) frame captions -> (N,) the first frame back on the opening shot's caption after
    a cut away from it, or -1 for a clip that never returns (stage 2 splits at it)."""
    same = (captions == captions[:, :1]).all(-1)                              # (N, T) on the opening caption
    away = (~same).long().cummax(1).values.bool()                             # (N, T) a cut away has happened
    back = same & away                                                        # (N, T)
    frame = back.float().argmax(1)                                            # (N,) the first such frame
    return torch.where(back.any(1), frame, torch.full_like(frame, -1))


# ----------------------------------------------------------------------------- written stories
def parse_story(text: str, frames: int) -> torch.Tensor:
    """A story of captions per frame range -> (T, L) long, e.g.
        "0-8: red stripes, blue disc | 8-16: green dots, white cross | 16-24: red stripes, blue disc"
    Ranges are frames, end exclusive, separated by | or new lines, and must cover [0, frames)
    exactly (no gap, no overlap, nothing beyond). An empty caption is the null caption. `text`
    may also be the path of a text file holding such a story."""
    text = str(text)
    if os.path.isfile(text) or ("\n" not in text and text.strip().lower().endswith(".txt")):
        if not os.path.isfile(text):
            raise DataError(f"story file {text!r} does not exist: pass a file or a story like '0-8: red stripes, blue disc | 8-16: ...'")
        try:
            with open(text, encoding="utf-8-sig") as file:          # a byte-order mark is not part of the story
                text = file.read()
        except UnicodeDecodeError:
            raise DataError(f"story file {text!r} is not a text file: write the story in plain text, "
                            f"e.g. '0-8: red stripes, blue disc | 8-16: ...'") from None
    text = text.lstrip("\ufeff")
    parts = [part.strip() for part in re.split(r"[|\n]", text) if part.strip() and not part.strip().startswith("#")]
    if not parts:
        raise DataError("the story is empty: write it like '0-8: red stripes, blue disc | 8-16: green dots, white cross'")
    spans = []
    for part in parts:
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)\s*:(.*)", part)
        if not match:
            raise DataError(f"story part {part!r} is not 'START-END: caption' (frames, end exclusive), e.g. '0-8: red stripes, blue disc'")
        start, end = int(match.group(1)), int(match.group(2))
        if end <= start:
            raise DataError(f"story range {start}-{end} is empty: the end (exclusive) must be after the start")
        spans.append((start, end, encode_caption(match.group(3))))
    spans.sort(key=lambda span: span[0])
    covered = 0
    for start, end, _ in spans:
        if start > covered:
            raise DataError(f"the story leaves frames {covered}-{start} without a caption: cover every frame of [0, {frames})")
        if start < covered:
            raise DataError(f"story range {start}-{end} overlaps the range before it, which ends at {covered}")
        covered = end
    if covered != frames:
        what = "goes beyond" if covered > frames else "stops before the end of"
        raise DataError(f"the story ends at frame {covered}, which {what} the {frames} frames it must cover exactly")
    captions = torch.zeros(frames, CAPTION_LENGTH, dtype=torch.long)             # (T, L)
    for start, end, ids in spans:
        captions[start:end] = ids
    return captions


def format_story(captions: torch.Tensor) -> str:
    """(T, L) captions -> the story text parse_story reads back, one range per run of equal captions."""
    parts, start = [], 0
    for t in range(1, len(captions) + 1):
        if t == len(captions) or not torch.equal(captions[t], captions[start]):
            parts.append(f"{start}-{t}: {decode_caption(captions[start])}")
            start = t
    return " | ".join(parts)



# ----------------------------------------------------------------------------- real clips
def real_words(names) -> dict:
    """{file name: its caption word}: the k-th name in sorted order gets real<k> (mod 12), so the
    same folder gives the same words for training and evaluation."""
    return {name: REAL_WORDS[k % len(REAL_WORDS)] for k, name in enumerate(sorted(names))}

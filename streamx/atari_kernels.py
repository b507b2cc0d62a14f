"""Numba kernels of the fast Atari frame pipeline (``streamx.atari.AtariFrames``).

The pipeline reads the emulator's screen as palette indices (``ALEInterface.getScreen``, one
byte per pixel, no colour conversion) and turns the last two frames of an agent step into the
84×84 resized RGB frame that ``cv2.resize(np.maximum(rgb_a, rgb_b), (84, 84),
interpolation=cv2.INTER_AREA)`` gives, **bit for bit**:

- the palette (index → RGB) is learned from the emulator itself: every frame's indices are
  checked against the colours seen so far, and a frame with a new colour is read once in RGB
  (``getScreenRGB``) while it is still on screen (:func:`frame_colours_known`, :func:`learn_colours`);
- the area resize follows OpenCV's ``INTER_AREA`` downscaling exactly (its weight table, its
  float32 arithmetic and its order of additions: horizontal pass per source row, then the
  vertical sum), so the same numbers are rounded the same way (:func:`area_table`);
- between agent steps only the output pixels whose source pixels changed in either frame are
  recomputed (:func:`update_frame`); most of an Atari screen is still from one step to the next.

Each output pixel is computed with the same operations in the same order whether the whole
frame or one pixel is recomputed, so the result does not depend on what changed.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["area_table", "frame_colours_known", "learn_colours", "resize_tables", "update_frame"]

_MAX_TAPS = 4  # source pixels per output pixel and axis; a scale below 3 needs at most 4


def area_table(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's ``INTER_AREA`` weights for shrinking ``source`` pixels to ``target`` along one
    axis: for each output pixel, its source pixels (``index[d, :count[d]]``, increasing) and
    their float32 weights. Same arithmetic as OpenCV's table (double, then cast to float)."""
    if not 0 < target <= source:
        raise ValueError(f"area resizing shrinks: target {target} must be in 1..{source}")
    scale = 1.0 / (target / source)  # OpenCV: scale = 1 / inv_scale, inv_scale = dsize / ssize
    count = np.zeros(target, np.int32)
    index = np.zeros((target, _MAX_TAPS), np.int32)
    weight = np.zeros((target, _MAX_TAPS), np.float32)

    def add(d: int, s: int, alpha: float) -> None:
        if count[d] == _MAX_TAPS:
            raise ValueError(f"scale {scale:.3f} needs more than {_MAX_TAPS} source pixels per output pixel")
        index[d, count[d]], weight[d, count[d]] = s, np.float32(alpha)
        count[d] += 1

    for d in range(target):
        fs1 = d * scale
        fs2 = fs1 + scale
        cell = min(scale, source - fs1)
        s1, s2 = math.ceil(fs1), math.floor(fs2)
        s2 = min(s2, source - 1)
        s1 = min(s1, s2)
        if s1 - fs1 > 1e-3:
            add(d, s1 - 1, (s1 - fs1) / cell)
        for s in range(s1, s2):
            add(d, s, 1.0 / cell)
        if fs2 - s2 > 1e-3:
            add(d, s2, min(min(fs2 - s2, 1.0), cell) / cell)
    return count, index, weight


def resize_tables(height: int, width: int, out_height: int, out_width: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tables :func:`update_frame` takes for shrinking ``(height, width)`` frames to
    ``(out_height, out_width)``: per axis (0 = rows, 1 = columns) the :func:`area_table` and,
    for each source pixel, the first and last output pixel that reads it."""
    size, source_size = max(out_height, out_width), max(height, width)
    counts = np.zeros((2, size), np.int32)
    indices = np.zeros((2, size, _MAX_TAPS), np.int32)
    weights = np.zeros((2, size, _MAX_TAPS), np.float32)
    reach = np.zeros((2, 2, source_size), np.int32)
    reach[:, 0], reach[:, 1] = -1, -2  # read by no output pixel
    for axis, (source, target) in enumerate(((height, out_height), (width, out_width))):
        count, index, weight = area_table(source, target)
        counts[axis, :target], indices[axis, :target], weights[axis, :target] = count, index, weight
        for d in range(target):
            for s in index[d, :count[d]]:
                if reach[axis, 0, s] < 0:
                    reach[axis, 0, s] = d
                reach[axis, 1, s] = d
    return counts, indices, weights, reach


@nb.njit(cache=True, nogil=True)
def frame_colours_known(new: np.ndarray, new_words: np.ndarray, base_words: np.ndarray,
                        known: np.ndarray, everywhere: bool) -> bool:
    """Whether every palette index of the frame ``new`` has a learned colour. Only pixels that
    differ from ``base`` (a frame whose colours are all known) are looked up, eight at a time
    compared as 64-bit words, unless ``everywhere``."""
    if everywhere:
        for i in range(new.shape[0]):  # noqa: SIM110 (a plain loop compiles to a plain loop in numba)
            if not known[new[i]]:
                return False
        return True
    for w in range(new_words.shape[0]):
        if new_words[w] != base_words[w]:
            for i in range(8 * w, 8 * w + 8):
                if not known[new[i]]:
                    return False
    return True


@nb.njit(cache=True, nogil=True)
def learn_colours(indices: np.ndarray, rgb: np.ndarray, palette: np.ndarray, known: np.ndarray) -> None:
    """Record the colour of every palette index on a frame read both ways (indices, RGB)."""
    for i in range(indices.shape[0]):
        p = indices[i]
        palette[p, 0] = rgb[i, 0]
        palette[p, 1] = rgb[i, 1]
        palette[p, 2] = rgb[i, 2]
        known[p] = True


@nb.njit(cache=True, nogil=True, inline="always")
def _colour(screens: np.ndarray, pair: np.ndarray, palette: np.ndarray, sy: int, sx: int, channel: int) -> np.float32:
    """One channel of the max-pool of the pair's two frames at a source pixel."""
    return np.float32(max(palette[screens[pair[0], sy, sx], channel], palette[screens[pair[1], sy, sx], channel]))


@nb.njit(cache=True, nogil=True)
def _pixel(screens: np.ndarray, pair: np.ndarray, palette: np.ndarray, out: np.ndarray, dy: int, dx: int,
           counts: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> None:
    """Output pixel (dy, dx) as OpenCV computes it: per source row, the horizontal sum of
    weight × colour in float32 (taps in increasing order, starting from 0), then the sum over
    rows of row weight × that (the first row's product, then additions)."""
    for c in range(3):
        total = np.float32(0.0)
        for j in range(counts[0, dy]):
            sy = indices[0, dy, j]
            h = np.float32(0.0)
            for t in range(counts[1, dx]):
                h = h + _colour(screens, pair, palette, sy, indices[1, dx, t], c) * weights[1, dx, t]
            total = weights[0, dy, j] * h if j == 0 else total + weights[0, dy, j] * h
        out[dy, dx, c] = min(255, max(0, int(np.rint(total))))


@nb.njit(cache=True, nogil=True)
def _whole_frame(screens: np.ndarray, pair: np.ndarray, palette: np.ndarray, out: np.ndarray,
                 counts: np.ndarray, indices: np.ndarray, weights: np.ndarray, row: np.ndarray) -> None:
    """Every output pixel, with the numbers :func:`_pixel` computes, each source row's colours
    and horizontal sums computed once. ``row``: float32 ``(4, 3, max(width, out width))``."""
    width = screens.shape[2]
    out_height, out_width = out.shape[0], out.shape[1]
    previous_row = -1
    for dy in range(out_height):
        for j in range(counts[0, dy]):
            sy = indices[0, dy, j]
            beta = weights[0, dy, j]
            slot = sy & 1
            if sy != previous_row:
                for x in range(width):
                    a = screens[pair[0], sy, x]
                    b = screens[pair[1], sy, x]
                    for c in range(3):
                        row[3, c, x] = np.float32(max(palette[a, c], palette[b, c]))
                for c in range(3):
                    for dx in range(out_width):
                        h = np.float32(0.0)
                        for t in range(counts[1, dx]):
                            h = h + row[3, c, indices[1, dx, t]] * weights[1, dx, t]
                        row[slot, c, dx] = h
                previous_row = sy
            for c in range(3):
                for dx in range(out_width):
                    h = row[slot, c, dx]
                    row[2, c, dx] = beta * h if j == 0 else row[2, c, dx] + beta * h
        for dx in range(out_width):
            for c in range(3):
                out[dy, dx, c] = min(255, max(0, int(np.rint(row[2, c, dx]))))


@nb.njit(cache=True, nogil=True)
def update_frame(screens: np.ndarray, pair: np.ndarray, seen: np.ndarray, palette: np.ndarray, out: np.ndarray,
                 counts: np.ndarray, indices: np.ndarray, weights: np.ndarray, reach: np.ndarray,
                 dirty: np.ndarray, marks: np.ndarray, row: np.ndarray, everything: bool, most: int) -> int:
    """Bring ``out`` (the resized RGB max-pool of the frames ``seen[0]``, ``seen[1]``) up to date
    with the frames ``screens[pair[0]]``, ``screens[pair[1]]`` (palette indices) and copy those
    into ``seen``. Recomputes only the output pixels that read a changed source pixel, or all of
    them when ``everything`` or when more than ``most`` output pixels would be. Returns how many
    output pixels were recomputed.

    Tables (axis 0 = rows, 1 = columns): ``counts[a, d]`` source pixels of output pixel d,
    ``indices[a, d, :]`` and ``weights[a, d, :]`` those pixels and their weights,
    ``reach[a, :, s]`` the first and last output pixel that reads source pixel s. ``dirty``
    (zeros, one per output pixel) and ``marks`` (as many int32 entries) are scratch space.
    """
    width = screens.shape[2]
    out_width = out.shape[1]
    first = screens[pair[0]].reshape(-1)
    last = screens[pair[1]].reshape(-1)
    seen_first = seen[0].reshape(-1)
    seen_last = seen[1].reshape(-1)
    first_words, last_words = first.view(np.uint64), last.view(np.uint64)
    seen_first_words, seen_last_words = seen_first.view(np.uint64), seen_last.view(np.uint64)
    marked = 0
    for w in range(first_words.shape[0]):
        if first_words[w] != seen_first_words[w] or last_words[w] != seen_last_words[w]:
            if not everything:
                for i in range(8 * w, 8 * w + 8):
                    if first[i] != seen_first[i] or last[i] != seen_last[i]:
                        sy, sx = i // width, i % width
                        for dy in range(reach[0, 0, sy], reach[0, 1, sy] + 1):
                            for dx in range(reach[1, 0, sx], reach[1, 1, sx] + 1):
                                if dirty[dy, dx] == 0 and marked <= most:
                                    dirty[dy, dx] = 1
                                    marks[marked] = dy * out_width + dx
                                    marked += 1
                if marked > most:
                    everything = True
            seen_first_words[w] = first_words[w]
            seen_last_words[w] = last_words[w]
    for k in range(min(marked, most + 1)):
        dy, dx = marks[k] // out_width, marks[k] % out_width
        dirty[dy, dx] = 0
        if not everything:
            _pixel(screens, pair, palette, out, dy, dx, counts, indices, weights)
    if everything:
        _whole_frame(screens, pair, palette, out, counts, indices, weights, row)
        return out.shape[0] * out_width
    return marked

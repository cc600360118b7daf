"""The causal-ordering decode: the one implementation used by training, evaluation and inference.

``best_triplet`` finds, per video, the frames (i, k, j) maximising

    initial[i] * action[k] * end[j]     subject to  i < k < j,  k - i <= D,  j - k <= D,

and ``best_pair`` the state-only pair i < j maximising initial[i] * end[j].

Exact, O(T) time and memory per video, batched, on the inputs' device. For a fixed action frame
k the best initial frame is the maximum of ``initial`` over the window [k-D, k-1] and the best end
frame the maximum of ``end`` over [k+1, k+D]; the triplet is then the best k. Window maxima are
computed with the van Herk / Gil-Werman block trick (prefix and suffix maxima inside blocks of D
frames, so any D-wide window is the max of one suffix and one prefix), which is O(T) for any D.

Ties follow METHOD.md: the first maximum in the order i ascending, then k, then j. The first
best k is taken, then i (j) is the first frame of k's left (right) window holding that window's
maximum. The first maximum's position never decreases as a window slides right, so this is the
lexicographically first (i, k, j); a zero maximum (every triplet ties) gives (0, 1, 2). It is also
the release's evaluation rule (first maximum in (i, j) order, then k = first maximum of the action
strictly between), which coincides with (i, k, j) order whenever the products are exact.

Products are formed in the release evaluation's order, ``(initial[i] * end[j]) * action[k]``, in
float32 (float64 inputs stay float64). Rounding is monotone, so the maximum is the brute-force
maximum; only products that differ in exact arithmetic yet round to the same float could be ordered
differently from a brute-force loop (see docs/architecture.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NO_INDEX = -1  # returned for videos too short to hold a pair / triplet


def best_triplet(
    initial: torch.Tensor,
    action: torch.Tensor,
    end: torch.Tensor,
    lengths: torch.Tensor | None = None,
    max_distance: int | None = 500,
) -> torch.Tensor:
    """Frame indices (initial, action, end) of the best ordered triplet of each video.

    initial, action, end: non-negative probabilities [B, T] (or [T] for one video).
    lengths: valid length of each video [B]; frames at or past it are padding. Default: all T.
    max_distance: D, the largest allowed k - i and j - k; ``None`` for no limit.
    Returns LongTensor [B, 3] (or [3]) of (i, k, j); a row of -1 where a video has < 3 frames.
    """
    single = initial.dim() == 1
    initial, action, end, lengths = _prepare(("initial", initial), ("action", action), ("end", end), lengths=lengths)
    if max_distance is not None and max_distance < 1:
        raise ValueError(f"max_distance must be a positive number of frames or None, got {max_distance}.")
    batch, n_frames = initial.shape
    device = initial.device
    result = torch.full((batch, 3), NO_INDEX, dtype=torch.long, device=device)
    if n_frames < 3:
        return result[0] if single else result

    frame = torch.arange(n_frames, device=device)
    padding = frame >= lengths[:, None]  # [B, T]
    initial = initial.masked_fill(padding, -torch.inf)
    end = end.masked_fill(padding, -torch.inf)

    window = n_frames if max_distance is None else min(max_distance, n_frames)
    before = _max_before(initial, window)  # [B, T]: max of initial[k-D .. k-1]
    after = _max_after(end, window)  # [B, T]: max of end[k+1 .. k+D]
    score = (before * after) * action  # [B, T], the release's product order
    no_room = (frame < 1) | (frame > lengths[:, None] - 2)  # k needs a frame on each side
    best_value, best_action = score.masked_fill(no_room, -torch.inf).max(dim=1)  # first maximum: first k

    rows = torch.arange(batch, device=device)
    best_initial = _first_index_of(initial, best_action - window, window, before[rows, best_action])
    best_end = _first_index_of(end, best_action + 1, window, after[rows, best_action])
    triplet = torch.stack((best_initial, best_action, best_end), dim=1)
    # a zero maximum makes every triplet a tie: the first one in (i, k, j) order is (0, 1, 2)
    triplet = torch.where((best_value == 0)[:, None], torch.arange(3, device=device).expand(batch, 3), triplet)
    result = torch.where((lengths >= 3)[:, None], triplet, result)
    return result[0] if single else result


def best_pair(initial: torch.Tensor, end: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Frame indices (initial, end), i < j, maximising initial[i] * end[j]; first maximum in (i, j) order.

    initial, end: non-negative probabilities [B, T] (or [T]); lengths [B] as in ``best_triplet``.
    Returns LongTensor [B, 2] (or [2]); a row of -1 where a video has < 2 frames.
    """
    single = initial.dim() == 1
    initial, end, lengths = _prepare(("initial", initial), ("end", end), lengths=lengths)
    batch, n_frames = initial.shape
    device = initial.device
    result = torch.full((batch, 2), NO_INDEX, dtype=torch.long, device=device)
    if n_frames < 2:
        return result[0] if single else result

    frame = torch.arange(n_frames, device=device)
    end = end.masked_fill(frame >= lengths[:, None], -torch.inf)
    after = _max_after(end, n_frames)  # [B, T]: max of end[i+1 ..]
    no_room = frame > lengths[:, None] - 2
    best_value, best_initial = (initial * after).masked_fill(no_room, -torch.inf).max(dim=1)  # first i
    rows = torch.arange(batch, device=device)
    # j: the first frame after i whose *product* reaches the maximum, as the release's loop finds it
    # (two end values one float apart can round to the same product)
    products = initial[rows, best_initial][:, None] * end  # [B, T]
    best_end = _first_index_of(products, best_initial + 1, n_frames, best_value)
    pair = torch.stack((best_initial, best_end), dim=1)
    # a zero maximum makes every pair a tie: the first one is (0, 1)
    pair = torch.where((best_value == 0)[:, None], torch.arange(2, device=device).expand(batch, 2), pair)
    result = torch.where((lengths >= 2)[:, None], pair, result)
    return result[0] if single else result


# ----------------------------------------------------------------------------------------------
# input checks


def _prepare(
    *named: tuple[str, torch.Tensor], lengths: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    """Validate and batch the probability tensors; returns them as [B, T] plus lengths [B]."""
    first_name, first = named[0]
    for name, tensor in named:
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
        if tensor.dim() not in (1, 2):
            raise ValueError(f"{name} must have shape [T] or [B, T], got {tuple(tensor.shape)}.")
        if tensor.shape != first.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but {first_name} has {tuple(first.shape)}; "
                "all probability tensors must have the same shape."
            )
        if tensor.device != first.device:
            raise ValueError(f"{name} is on {tensor.device} but {first_name} is on {first.device}.")
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must hold floating-point probabilities, got {tensor.dtype}.")
    dtype = torch.float64 if any(t.dtype == torch.float64 for _, t in named) else torch.float32
    batched = [t.to(dtype).unsqueeze(0) if t.dim() == 1 else t.to(dtype) for _, t in named]  # [B, T]
    for (name, _), tensor in zip(named, batched, strict=True):
        if tensor.numel() == 0:
            continue
        low, high = torch.aminmax(tensor)  # NaN propagates into both
        if not (bool(low >= 0) and bool(high < torch.inf)):
            if torch.isnan(tensor).any():
                raise ValueError(f"{name} contains NaN; the model produced invalid probabilities.")
            if (tensor < 0).any():
                raise ValueError(f"{name} contains negative values; expected probabilities in [0, 1].")
            raise ValueError(f"{name} contains infinite values; expected probabilities in [0, 1].")
    batch, n_frames = batched[0].shape
    if lengths is None:
        lengths = torch.full((batch,), n_frames, dtype=torch.long, device=first.device)
    else:
        lengths = torch.as_tensor(lengths, device=first.device)
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ValueError(f"lengths must have shape [{batch}], got {tuple(lengths.shape)}.")
        if lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be integers, got {lengths.dtype}.")
        lengths = lengths.long()
        if ((lengths < 0) | (lengths > n_frames)).any():
            raise ValueError(f"lengths must lie in [0, {n_frames}], got {lengths.tolist()}.")
    return (*batched, lengths)


# ----------------------------------------------------------------------------------------------
# window maxima (values only) and the first position of a maximum


def _max_before(values: torch.Tensor, window: int) -> torch.Tensor:
    """For every k, the max of values[k-window .. k-1] (clipped at 0); -inf at k = 0.  [B, T] -> [B, T]"""
    n_frames = values.shape[1]
    if window >= n_frames:  # no limit: running maximum, shifted one frame right
        return F.pad(values.cummax(dim=1).values[:, :-1], (1, 0), value=-torch.inf)
    # the window starting at padded position k covers values[k - window .. k - 1]
    return _sliding_max(F.pad(values, (window, 0), value=-torch.inf), window)[:, :n_frames]


def _max_after(values: torch.Tensor, window: int) -> torch.Tensor:
    """For every k, the max of values[k+1 .. k+window] (clipped at T-1); -inf at k = T-1.  [B, T] -> [B, T]"""
    shifted = F.pad(values[:, 1:], (0, 1), value=-torch.inf)  # shifted[k] = values[k + 1]
    if window >= values.shape[1]:  # no limit: running maximum from the right
        return shifted.flip(1).cummax(dim=1).values.flip(1)
    return _sliding_max(shifted, window)


def _sliding_max(values: torch.Tensor, window: int) -> torch.Tensor:
    """Max of values[b, t .. t+window-1] for every t; positions past the end count as -inf.

    van Herk / Gil-Werman: in blocks of ``window`` frames, the window starting at t is the suffix
    of t's block joined with the prefix of the next block.  [B, L] -> [B, L]
    """
    batch, length = values.shape
    n_blocks = -(-(length + window - 1) // window)
    blocks = F.pad(values, (0, n_blocks * window - length), value=-torch.inf).view(batch, n_blocks, window)
    prefix = blocks.cummax(dim=2).values.view(batch, -1)  # block start .. t
    suffix = blocks.flip(2).cummax(dim=2).values.flip(2).reshape(batch, -1)  # t .. block end
    return torch.maximum(suffix[:, :length], prefix[:, window - 1 : window - 1 + length])


def _first_index_of(values: torch.Tensor, start: torch.Tensor, width: int, target: torch.Tensor) -> torch.Tensor:
    """First position p in [start, start + width) (clipped to the row) with values[b, p] == target[b].

    values [B, T], start [B], target [B] -> LongTensor [B]; reads a [B, width] slice, width <= T.
    """
    n_frames = values.shape[1]
    position = start[:, None] + torch.arange(width, device=values.device)  # [B, width]
    inside = (position >= 0) & (position < n_frames)
    window = values.gather(1, position.clamp(0, n_frames - 1))
    match = (window == target[:, None]) & inside
    return position.gather(1, match.byte().argmax(dim=1, keepdim=True)).squeeze(1)  # argmax: first True

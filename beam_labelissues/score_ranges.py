"""Gathering issue candidates per score range before the ranking shuffle.

Both methods key their candidates by the score range that ranks them
(``transforms.SelectIssueCandidates``, ``full_method.KeyIssuesByScoreRange``). One part
per batch and range made the shuffle hold about ten times the bytes of the rows in
per-element overhead, so the rows are gathered over the bundle and emitted as one part
per range (sooner once ``FLUSH_ROWS`` rows wait). The last range gets a part from every
bundle, even an empty one: its group, and so its file, always exist.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindows

from beam_labelissues.batches import IssueCandidates

# Rows a DoFn keeps before it emits its parts: about 1.5 MB of candidates, beside the
# runner's own copies of them (1M rows kept 24 MB more at the 10M x 10 full method's peak).
FLUSH_ROWS = 1 << 16


class GatherByScoreRange(beam.DoFn):
    """Base DoFn: ``process`` calls ``note_bundle`` for each element and ``gather`` for its
    candidates; parts leave as ``(range index, IssueCandidates)``."""

    def start_bundle(self):
        self._parts: Dict[int, List[IssueCandidates]] = {}
        self._rows = 0
        self._empty_part: Optional[IssueCandidates] = None
        self._last_range = 0

    def note_bundle(self, num_ranges: int, empty_part: IssueCandidates) -> None:
        """Records the element's number of ranges and an empty part of its kind, for the
        last range's part."""
        self._last_range = num_ranges - 1
        self._empty_part = empty_part

    def gather(self, candidates: IssueCandidates, ranges: np.ndarray) -> Iterator[Tuple[int, IssueCandidates]]:
        """Adds each candidate to the part of its range (``ranges``, one per row)."""
        for range_index in np.unique(ranges).tolist():
            self._parts.setdefault(int(range_index), []).append(candidates.take(np.flatnonzero(ranges == range_index)))
        self._rows += len(candidates)
        if self._rows >= FLUSH_ROWS:
            yield from self._flush()

    def _flush(self) -> Iterator[Tuple[int, IssueCandidates]]:
        for range_index, parts in sorted(self._parts.items()):
            yield range_index, IssueCandidates.concatenate(parts)
        self._parts.clear()
        self._rows = 0

    def finish_bundle(self):
        if self._empty_part is None:  # the bundle held no element
            return
        self._parts.setdefault(self._last_range, []).append(self._empty_part)
        for keyed_part in self._flush():
            yield GlobalWindows.windowed_value(keyed_part)

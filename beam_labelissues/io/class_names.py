"""Class names from a file: a JSON list of strings, or one name per line."""

from __future__ import annotations

import json
from typing import List, Optional

from apache_beam.io.filesystems import FileSystems

from beam_labelissues.io import paths


def load_class_names(path: str, num_classes: Optional[int] = None) -> List[str]:
    """Reads class names (local, gs:// or s3://); line k (or item k) names class k.

    Blank names inside the list and duplicate names are refused rather than
    silently shifting or merging classes; with ``num_classes`` the count must match.
    Raises ValueError naming the file and the problem.
    """
    kind = paths.non_regular_kind(path)
    if kind:
        raise ValueError(f"class names file {path} is a {kind}, not a file")
    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"class names file {path} is not UTF-8 text: {error}") from None
    except Exception as error:  # OSError, BeamIOError
        raise ValueError(f"class names file {path} cannot be read: {error}") from None
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"class names file {path} is empty")
    if stripped.startswith("["):
        try:
            names = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"class names file {path} is not a valid JSON list: {error}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"class names file {path} must hold a JSON list of strings")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in stripped.splitlines()]
    if not names:
        raise ValueError(f"class names file {path} holds no names")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(
            f"class names file {path} has an empty name for class {empty[0]} "
            "(one name per line, line k naming class k)"
        )
    seen: dict = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"class names file {path} names classes {seen[name]} and {i} both {name!r}")
        seen[name] = i
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{path} names {len(names)} classes, but the data has {num_classes}")
    return names

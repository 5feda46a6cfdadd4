"""Where an example lives: ``--example_uri_template`` turns each id into a URI.

The template is a plain string with ``{id}`` where the example's id goes, for
example ``gs://bucket/images/{id}.jpg`` or ``https://data.example.com/items/{id}``;
``{{`` and ``}}`` stand for literal braces. No other field, format spec or
conversion is allowed, so the same template means the same thing in Python, in
the report's JavaScript and to a person reading summary.json. The id is put in
as it is (not URL-encoded).

The URIs are built column-wise with Arrow (no Python per row); the report turns
them into links a browser can open and reads local image files for thumbnails.
"""

from __future__ import annotations

import os
import re
import string
import urllib.parse
from typing import List, Optional

import pyarrow as pa
import pyarrow.compute as pc

ID_FIELD = "id"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def template_parts(template: str) -> List[str]:
    """The literal pieces around each ``{id}``: one more piece than there are fields.

    Raises ValueError, naming the problem, for anything but ``{id}`` fields.
    """
    if not isinstance(template, str):
        raise ValueError(f"example_uri_template must be a string, got {template!r}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(
            f"example_uri_template {template!r} is not a valid template ({error}); "
            "write {id} for the id and {{ or }} for a literal brace"
        ) from None
    parts = [""]
    fields = 0
    for literal, field, spec, conversion in parsed:
        parts[-1] += literal
        if field is None:
            continue
        if field != ID_FIELD or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"example_uri_template {template!r} uses {shown}: only {{id}} is allowed "
                "(no other field, format spec or conversion)"
            )
        fields += 1
        parts.append("")
    if fields == 0:
        raise ValueError(f"example_uri_template {template!r} has no {{id}}: every example would get the same URI")
    return parts


def check_uri_template(template: Optional[str]) -> Optional[str]:
    """The template unchanged when valid (or None); ValueError otherwise."""
    if template is not None:
        template_parts(template)
    return template


def format_uri(template: str, example_id) -> str:
    """One example's URI (the column-wise ``uri_array`` gives the same)."""
    return str(example_id).join(template_parts(template))


def uri_array(ids: pa.Array, template: str) -> pa.Array:
    """The URIs of a column of ids (integer or string), column-wise."""
    parts = template_parts(template)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    text = pc.cast(ids, pa.string())
    pieces: list = []
    for i, literal in enumerate(parts):
        if literal:
            pieces.append(literal)
        if i < len(parts) - 1:
            pieces.append(text)
    if len(pieces) == 1:
        return pieces[0]
    return pc.binary_join_element_wise(*pieces, "")


def local_path(uri: str) -> Optional[str]:
    """The local file a URI names (a plain path or a ``file://`` URI), else None."""
    match = _SCHEME.match(uri)
    if match is None:
        return uri
    if match.group(1).lower() == "file":
        return urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
    return None


def browser_link(uri: str) -> Optional[str]:
    """A link a browser can follow to the example, or None.

    http(s) URIs are kept; gs:// and s3:// objects open in the cloud console's
    authenticated object URL; local paths become ``file://`` URLs (absolute from
    the directory the report is built in). Other schemes get no link.
    """
    match = _SCHEME.match(uri)
    if match is None:
        return "file://" + urllib.parse.quote(os.path.abspath(uri))
    scheme = match.group(1).lower()
    rest = uri[match.end():]
    if scheme in ("http", "https", "file"):
        return uri
    if scheme == "gs":
        return "https://storage.cloud.google.com/" + urllib.parse.quote(rest, safe="/")
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        return f"https://{bucket}.s3.amazonaws.com/" + urllib.parse.quote(key, safe="/")
    return None

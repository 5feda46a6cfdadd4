"""The issues exported for a relabelling round: Label Studio tasks or a plain CSV.

Written after the run by the command line (``--export labelstudio,csv``) into the
output directory through Beam's FileSystems, and listed in summary.json's
``export_files``. Both stream the label_issues files batch by batch, building
each batch's rows column-wise with Arrow, so a million issues cost neither a
Python object per row nor memory beyond one batch.

Label Studio (its "Import pre-annotated data" format, a JSON list of tasks):

- ``label_issues_labelstudio.json``: one task per issue, in rank order:
  ``{"data": {...}, "predictions": [{"model_version", "score", "result": [...]}]}``.
  ``data`` holds the example (``image`` = its URI when ``--example_uri_template``
  names image files, else ``example`` = the URI or the id as text) and the
  issue's columns; the prediction pre-selects the model's predicted class in the
  ``Choices`` control (``type: choices``), with the model's probability of it as
  the score.
- ``label_issues_labelstudio_config.xml``: the labeling config those tasks match
  (an ``Image`` or ``Text`` object, the given label shown in a header, and one
  ``Choice`` per class); paste it into the project's Labeling Interface.
"""

from __future__ import annotations

import json
from typing import Iterator, List, Optional, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from beam_labelissues._version import __version__
from beam_labelissues.io import outputs

EXPORT_FORMATS = ("labelstudio", "csv")
_BATCH_ROWS = 65536
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".svg")
# Names in the labeling config; the tasks' results refer to them.
CHOICES_NAME = "label"
IMAGE_OBJECT = "image"
TEXT_OBJECT = "example"


def parse_export_formats(values: Optional[Sequence[str]]) -> List[str]:
    """``["labelstudio,csv"]`` or ``["csv", "labelstudio"]`` -> the formats, each once; ValueError on others."""
    formats: List[str] = []
    for value in values or []:
        for name in (part.strip().lower() for part in value.split(",")):
            if not name:
                continue
            if name not in EXPORT_FORMATS:
                raise ValueError(f"--export: unknown format {name!r}; choose from {', '.join(EXPORT_FORMATS)}")
            if name not in formats:
                formats.append(name)
    return formats


def write_exports(output_dir: str, summary: outputs.Summary, formats: Sequence[str]) -> outputs.Summary:
    """Writes each export, then records the files in summary.json; returns the updated summary."""
    names: List[str] = []
    for name in formats:
        if name == "csv":
            write_csv(output_dir, summary)
            names.append(outputs.CSV_EXPORT_FILE)
        elif name == "labelstudio":
            write_labelstudio(output_dir, summary)
            names += [outputs.LABELSTUDIO_EXPORT_FILE, outputs.LABELSTUDIO_CONFIG_FILE]
        else:
            raise ValueError(f"unknown export format {name!r}")
    if not names:
        return summary
    return outputs.record_export_files(output_dir, summary, names)


def _issue_batches(output_dir: str, summary: outputs.Summary) -> Iterator[pa.RecordBatch]:
    return outputs.iter_label_issue_batches(output_dir, summary, batch_size=_BATCH_ROWS)


# --- CSV --------------------------------------------------------------------------------------


def write_csv(output_dir: str, summary: outputs.Summary) -> str:
    """``label_issues.csv``: the label_issues columns, a header line, one row per issue in rank order."""

    def write(handle):
        writer = None
        sink = pa.PythonFile(handle, mode="w")
        for batch in _issue_batches(output_dir, summary):
            if writer is None:
                writer = pa_csv.CSVWriter(sink, batch.schema)
            writer.write_batch(batch)
        if writer is None:  # no issues: the (empty) files still give the header
            writer = pa_csv.CSVWriter(sink, outputs.read_label_issues(output_dir, summary).schema)
        writer.close()

    return outputs.write_then_rename(output_dir, outputs.CSV_EXPORT_FILE, "text/csv", write)


# --- Label Studio -------------------------------------------------------------------------------


def choice_values(summary: outputs.Summary) -> List[str]:
    """The ``Choice`` values, one per class: the class names, else the class indices."""
    if summary.class_names:
        return [str(name) for name in summary.class_names]
    return [str(k) for k in range(int(summary.num_classes))]


def uri_template(summary: outputs.Summary) -> Optional[str]:
    return (summary.options or {}).get("example_uri_template")


def labelstudio_object(summary: outputs.Summary) -> str:
    """The object tag the tasks show: ``Image`` when the URIs name image files, else ``Text``."""
    template = uri_template(summary)
    if template is not None and template.lower().split("?", 1)[0].endswith(_IMAGE_EXTENSIONS):
        return IMAGE_OBJECT
    return TEXT_OBJECT


def labelstudio_config(summary: outputs.Summary) -> str:
    """The labeling config the exported tasks match."""
    obj = labelstudio_object(summary)
    tag = "Image" if obj == IMAGE_OBJECT else "Text"
    choices = "\n".join(f"    <Choice value={quoteattr(value)}/>" for value in choice_values(summary))
    return (
        "<View>\n"
        f'  <{tag} name="{obj}" value="${obj}"/>\n'
        '  <Header value="Given label (flagged as likely wrong):" size="6"/>\n'
        '  <Header value="$given_label" size="5"/>\n'
        '  <Header value="The model\'s prediction is pre-selected; choose the correct label:" size="6"/>\n'
        f'  <Choices name="{CHOICES_NAME}" toName="{obj}" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def _json_strings(values: pa.Array) -> pa.Array:
    """Each string as a JSON string literal (quoted, escaped), column-wise."""
    values = pc.cast(values, pa.string())
    if pc.any(pc.match_substring_regex(values, r"[\x00-\x1f]")).as_py():  # rare: escape row by row
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values.to_pylist()],
                        pa.string())
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _json_values(column: pa.Array) -> pa.Array:
    """A column's values as JSON literals: numbers as Arrow writes them (shortest round trip), strings quoted."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _json_strings(column)
    return pc.cast(column, pa.string())


def _string_bytes(values: pa.Array) -> memoryview:
    """The concatenated UTF-8 bytes of a string array without nulls, straight from its buffers."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset: values.offset + len(values) + 1]
    return memoryview(values.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def _task_lines(batch: pa.RecordBatch, choices_json: pa.Array, obj: str, model_version_json: str) -> pa.Array:
    """One batch of issues as Label Studio task objects: JSON text, one per issue, each
    after a ``,`` and a line break."""
    given = batch.column("given_label")
    predicted = batch.column("predicted_label")
    given_choice = pc.take(choices_json, given)
    predicted_choice = pc.take(choices_json, predicted)
    names = batch.schema.names
    if "uri" in names:
        shown = _json_strings(batch.column("uri"))
    else:
        shown = _json_strings(pc.cast(batch.column("id"), pa.string()))
    pieces: list = [',\n{"data": {"', obj, '": ', shown]
    fields = [("example_id", "id"), ("rank", "rank"), ("given_label_index", "given_label"),
              ("predicted_label_index", "predicted_label"), ("label_quality", "label_quality"),
              ("given_label_prob", "given_label_prob"), ("predicted_label_prob", "predicted_label_prob")]
    if "uri" in names and obj != TEXT_OBJECT:
        fields.append(("uri", "uri"))
    for key, column in fields:
        if column in names:
            pieces += [f', "{key}": ', _json_values(batch.column(column))]
    pieces += [', "given_label": ', given_choice, ', "predicted_label": ', predicted_choice]
    pieces += ['}, "predictions": [{"model_version": ', model_version_json, ', "score": ',
               _json_values(batch.column("predicted_label_prob")),
               f', "result": [{{"from_name": "{CHOICES_NAME}", "to_name": "{obj}", "type": "choices", '
               '"value": {"choices": [', predicted_choice, "]}}]}]}"]
    return pc.binary_join_element_wise(*pieces, "")


def write_labelstudio(output_dir: str, summary: outputs.Summary) -> List[str]:
    """``label_issues_labelstudio.json`` (tasks with the predicted label as a pre-annotation)
    and ``label_issues_labelstudio_config.xml`` (the labeling config they match)."""
    obj = labelstudio_object(summary)
    choices_json = pa.array([json.dumps(value, ensure_ascii=False) for value in choice_values(summary)], pa.string())
    model_version_json = json.dumps(f"beam-labelissues {__version__} ({summary.method})")

    def write_tasks(handle):
        handle.write(b"[")
        first = True
        for batch in _issue_batches(output_dir, summary):
            if batch.num_rows == 0:
                continue
            tasks = _string_bytes(_task_lines(batch, choices_json, obj, model_version_json))
            handle.write(tasks[1:] if first else tasks)  # the first task follows "[" without a comma
            first = False
        handle.write(b"]\n" if first else b"\n]\n")

    config = labelstudio_config(summary).encode("utf-8")
    return [
        outputs.write_then_rename(output_dir, outputs.LABELSTUDIO_CONFIG_FILE, "application/xml",
                                  lambda handle: handle.write(config)),
        outputs.write_then_rename(output_dir, outputs.LABELSTUDIO_EXPORT_FILE, "application/json", write_tasks),
    ]

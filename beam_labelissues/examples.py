"""Per-example PCollections (dicts, ``beam.Row``, RunInference results) into ``ExampleBatch``.

Beam users hold one element per example: a dict, a schema'd ``beam.Row`` (or a
NamedTuple or dataclass), a ``PredictionResult`` from RunInference, or a
``(key, PredictionResult)`` pair from a ``KeyedModelHandler``. ``ExamplesToBatches``
batches them with ``BatchElements`` first and then shapes each batch with numpy,
so the per-element Python work is three field look-ups; ``FindLabelIssuesInExamples``
puts it in front of ``FindLabelIssues`` and gives it the id type.

Fields are named as the command line's column options name columns. A field is
a name, or a function of the element. A name is looked up by the kind of the
first element of each batch (the elements of a PCollection share one shape):

- a ``PredictionResult``: ``example``, ``inference`` and ``model_id`` are its own
  fields; any other name is looked up in its ``example`` (a dict, or an object
  with that attribute such as a ``beam.Row``);
- a ``(key, PredictionResult)`` pair: ``key`` is the key; a name the key holds
  (the key is a dict, a ``beam.Row`` or a NamedTuple) comes from the key, any
  other from the ``PredictionResult`` as above;
- a dict (any Mapping): ``element[name]``;
- anything else (``beam.Row``, a NamedTuple, a dataclass): ``getattr(element, name)``.

What a batch's values can be: ids are integers (int64) or strings, one kind for
the whole PCollection; labels are integer class indices, or class names when
``class_names`` is given; pred_probs are sequences (lists, tuples, 1-D numpy
arrays) of K numbers. A value that breaks the validation rule (a missing field,
a null, a list of the wrong length, a label outside [0, K) or not a class name)
makes its example an invalid record, decided by the one validation step. A
field whose kind can never fit (string ids when the id type is int64, string
labels without class names, text as probabilities) stops the run at the first
batch with the fix, as a ``TypeError``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.typehints import typehints
from apache_beam.typehints.row_type import RowTypeConstraint

from beam_labelissues import coders  # noqa: F401  registers the coder of ExampleBatch
from beam_labelissues.batches import ExampleBatch, MalformedRow
from beam_labelissues.options import LabelIssuesOptions
from beam_labelissues.transforms import FindLabelIssues, LabelIssuesResult

Field = Union[str, Callable[[Any], Any]]
DEFAULT_LABEL_FIELD = "label"
# pred_probs of a PredictionResult are its inference; of anything else, this field.
DEFAULT_PRED_PROBS_FIELD = "pred_probs"
# Examples per batch. The batches are fixed-size: BatchElements' adaptive sizing times
# the steps after it, which here are whole-batch numpy work whatever the size. Results
# never depend on the batch size.
DEFAULT_BATCH_SIZE = 4096
_INT64_MAX = np.iinfo(np.int64).max


class _Missing:
    """Stands for a field an element does not have."""

    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


# --- fields ---------------------------------------------------------------------------


def _is_keyed_prediction(element: Any) -> bool:
    return isinstance(element, tuple) and len(element) == 2 and isinstance(element[1], PredictionResult) \
        and not isinstance(element, PredictionResult)


def _holds(value: Any, name: str) -> bool:
    if isinstance(value, Mapping):
        return name in value
    if isinstance(value, (str, bytes, int, float, np.ndarray, np.generic)) or value is None:
        return False
    return hasattr(value, name)


def _plain_getter(name: str, sample: Any) -> Callable[[Any], Any]:
    return operator.itemgetter(name) if isinstance(sample, Mapping) else operator.attrgetter(name)


def _in_prediction(name: str, sample: PredictionResult) -> Callable[[Any], Any]:
    if name in PredictionResult._fields:
        return operator.attrgetter(name)
    inner = _plain_getter(name, sample.example)
    return lambda element: inner(element.example)


def field_getter(field: Field, sample: Any) -> Callable[[Any], Any]:
    """The function that reads ``field`` from elements shaped like ``sample``.

    See the module docstring for how a name is looked up.
    """
    if callable(field):
        return field
    if isinstance(sample, PredictionResult):
        return _in_prediction(field, sample)
    if _is_keyed_prediction(sample):
        key, prediction = sample
        if field == "key":
            return operator.itemgetter(0)
        if _holds(key, field):
            inner = _plain_getter(field, key)
            return lambda element: inner(element[0])
        inner = _in_prediction(field, prediction)
        return lambda element: inner(element[1])
    return _plain_getter(field, sample)


def _is_prediction(element: Any) -> bool:
    return isinstance(element, PredictionResult) or _is_keyed_prediction(element)


def _field_name(field: Field) -> str:
    return field if isinstance(field, str) else getattr(field, "__name__", repr(field))


def _read_field(elements: Sequence[Any], field: Field) -> List[Any]:
    """The field's value for every element; ``_MISSING`` where an element lacks it."""
    getter = field_getter(field, elements[0])
    try:
        return [getter(element) for element in elements]
    except (KeyError, AttributeError, IndexError, TypeError):
        pass
    values = []
    for element in elements:  # rare: some element lacks the field
        try:
            values.append(field_getter(field, element)(element))
        except (KeyError, AttributeError, IndexError, TypeError):
            values.append(_MISSING)
    return values


# --- the element type, when the pipeline is built --------------------------------------


def _row_fields(element_type: Any) -> Optional[Dict[str, Any]]:
    """Field name -> type of a schema'd element type (beam.Row, NamedTuple, dataclass)."""
    if isinstance(element_type, RowTypeConstraint):
        # RowTypeConstraint keeps its (name, type) pairs in _fields; Beam reads them the same way.
        return dict(getattr(element_type, "_fields", ()))
    if not isinstance(element_type, type) or issubclass(element_type, PredictionResult):
        return None
    if issubclass(element_type, tuple) and hasattr(element_type, "_fields"):
        names = list(element_type._fields)
    elif dataclasses.is_dataclass(element_type):
        names = [field.name for field in dataclasses.fields(element_type)]
    else:
        return None
    try:  # resolves annotations written as strings (from __future__ import annotations)
        hints = typing.get_type_hints(element_type)
    except Exception:  # an annotation that does not resolve says nothing
        hints = {}
    return {name: hints.get(name, Any) for name in names}


def _id_type_of(python_type: Any) -> Optional[pa.DataType]:
    """int64 or string for an id field's Python type; None when it does not say."""
    python_type = typehints.normalize(python_type, none_as_type=True)
    if isinstance(python_type, typehints.UnionConstraint):
        kinds = {_id_type_of(t) for t in python_type.union_types if t is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if not isinstance(python_type, type):
        return None
    if issubclass(python_type, bool):
        return None
    if issubclass(python_type, (int, np.integer)):
        return pa.int64()
    if issubclass(python_type, str):
        return pa.string()
    return None


def _is_text_type(python_type: Any) -> bool:
    python_type = typehints.normalize(python_type, none_as_type=True)
    if isinstance(python_type, typehints.UnionConstraint):
        members = [t for t in python_type.union_types if t is not type(None)]
        return bool(members) and all(_is_text_type(t) for t in members)
    return isinstance(python_type, type) and issubclass(python_type, str)


_NOT_EXAMPLES = (str, bytes, int, float, bool, np.ndarray, np.generic, list)


@dataclasses.dataclass(frozen=True)
class ElementTypeInfo:
    """What an input's element type tells when the pipeline is built.

    ``id_type``: the ids' Arrow type, when the id field's type says it.
    """

    id_type: Optional[pa.DataType]


def check_element_type(
    element_type: Any,
    label_field: Field,
    pred_probs_field: Optional[Field],
    id_field: Field,
    class_names: Optional[Sequence[str]],
    transform: str,
) -> ElementTypeInfo:
    """Checks a known element type against the fields; raises TypeError with the fix."""
    if element_type is None or element_type == typehints.Any:
        return ElementTypeInfo(None)
    if isinstance(element_type, type) and issubclass(element_type, ExampleBatch):
        raise TypeError(
            f"{transform} takes one element per example, but this PCollection holds ExampleBatch "
            "(whole batches already): apply FindLabelIssues to it directly"
        )
    if isinstance(element_type, type) and issubclass(element_type, _NOT_EXAMPLES) and \
            not issubclass(element_type, tuple):
        raise TypeError(
            f"{transform} takes one element per example (a dict, a beam.Row, a NamedTuple or "
            f"dataclass, or RunInference's PredictionResult), got elements of type {element_type.__name__}"
        )
    fields = _row_fields(element_type)
    if fields is not None:
        for role, field in (("label", label_field), ("pred_probs", pred_probs_field), ("id", id_field)):
            if isinstance(field, str) and field not in fields:
                raise TypeError(
                    f"{transform}: the elements have no {role} field {field!r}; their fields: "
                    f"{', '.join(fields)}"
                )
        if isinstance(label_field, str) and _is_text_type(fields[label_field]) and class_names is None:
            raise TypeError(
                f"{transform}: the label field {label_field!r} holds strings; give class_names to map "
                "label names to class indices"
            )
        id_type = _id_type_of(fields[id_field]) if isinstance(id_field, str) else None
        return ElementTypeInfo(id_type)
    if id_field == "key" and isinstance(element_type, typehints.TupleConstraint) \
            and len(element_type.tuple_types) == 2:
        return ElementTypeInfo(_id_type_of(element_type.tuple_types[0]))
    return ElementTypeInfo(None)


def resolve_id_type(info: ElementTypeInfo, id_type: Optional[pa.DataType], transform: str) -> pa.DataType:
    """The given id type, checked against the element type; else the element type's; else int64."""
    if id_type is not None:
        if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
            raise TypeError(f"{transform}: id_type must be pa.int64() or pa.string(), got {id_type}")
        id_type = pa.int64() if pa.types.is_integer(id_type) else pa.string()
        if info.id_type is not None and info.id_type != id_type:
            raise TypeError(
                f"{transform}: the elements' id field holds {_kind(info.id_type)} ids, but id_type is {id_type}"
            )
        return id_type
    return info.id_type or pa.int64()


def _kind(id_type: pa.DataType) -> str:
    return "string" if pa.types.is_string(id_type) else "integer"


# --- one batch ------------------------------------------------------------------------------


def _absent(values: List[Any], role: str, field: Field, problems: Dict[int, str]) -> None:
    """Records the elements that lack the field or hold None in it."""
    for i, value in enumerate(values):
        if value is _MISSING:
            problems.setdefault(i, f"the example has no {role} field {_field_name(field)!r}")
        elif value is None:
            problems.setdefault(i, f"{role} is null")


def _ids(values: List[Any], field: Field, id_type: pa.DataType, problems: Dict[int, str]) -> np.ndarray:
    """The ids as an int64 array, or an object array of str."""
    _absent(values, "id", field, problems)
    if pa.types.is_string(id_type):
        wrong = next((v for i, v in enumerate(values) if i not in problems and not isinstance(v, str)), None)
        if wrong is not None:
            raise TypeError(
                f"example id {wrong!r} is {type(wrong).__name__}, but the ids' type is string "
                "(pass id_type=pa.int64() for integer ids)"
            )
        ids = np.empty(len(values), dtype=object)
        ids[:] = values
        return ids
    if not problems:
        array = np.asarray(values)
        if array.dtype.kind == "i" or (array.dtype.kind == "u" and (not len(array) or array.max() <= _INT64_MAX)):
            return array.astype(np.int64)
    ids = np.zeros(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if i in problems:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            fix = "pass id_type=pa.string() for string ids" if isinstance(value, str) else "ids must be integers or strings"
            raise TypeError(f"example id {value!r} is {type(value).__name__}, but the ids' type is int64 ({fix})")
        if not -_INT64_MAX - 1 <= int(value) <= _INT64_MAX:
            problems[i] = f"id {int(value)} does not fit in int64"
        else:
            ids[i] = value
    return ids


def _label_problem(value: Any, class_index: Optional[Dict[str, int]]) -> Optional[str]:
    if isinstance(value, str):
        return None if value in class_index else f"label {value!r} is not one of the class names"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return None
    return f"label {value!r} is not a class index"


def _labels(
    values: List[Any], field: Field, class_names: Optional[Sequence[str]], problems: Dict[int, str]
) -> np.ndarray:
    """Class indices (int64); labels given as names are mapped through ``class_names``."""
    _absent(values, "label", field, problems)
    if class_names is None:
        text = next((v for v in values if isinstance(v, str)), None)
        if text is not None:
            raise TypeError(f"label {text!r} is a string: give class_names to map label names to class indices")
        if not problems:
            array = np.asarray(values)
            if array.dtype.kind in "iu":
                return array.astype(np.int64)
    class_index = {name: k for k, name in enumerate(class_names or ())}
    labels = np.zeros(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        if i in problems:
            continue
        problem = _label_problem(value, class_index)
        if problem is not None:
            problems[i] = problem
        else:
            labels[i] = class_index[value] if isinstance(value, str) else int(value)
    return labels


def _probability_row(value: Any, num_classes: int) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """One example's pred_probs as a float row, or the reason it is not one."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"pred_probs must be a sequence of numbers, got {value!r}")
    row = np.asarray(value)
    if row.ndim != 1:
        raise TypeError(
            f"pred_probs of an example must be a 1-D sequence of {num_classes} probabilities, got "
            f"{type(value).__name__} of shape {row.shape}"
        )
    if row.dtype.kind == "O":
        for column, item in enumerate(row.tolist()):
            if item is None:
                return None, f"pred_probs[{column}] is null"
            if isinstance(item, bool) or not isinstance(item, (int, float, np.number)):
                raise TypeError(f"pred_probs must be a sequence of numbers, got {value!r}")
    elif row.dtype.kind not in "fiu":
        raise TypeError(f"pred_probs must be a sequence of numbers, got {value!r}")
    if len(row) != num_classes:
        return None, f"pred_probs has {len(row)} values, expected {num_classes}"
    return row, None


def _pred_probs(values: List[Any], field: Field, num_classes: int, problems: Dict[int, str]) -> np.ndarray:
    """An n x K float array (float32 stays float32); rows that cannot be shaped are zeros."""
    _absent(values, "pred_probs", field, problems)
    if not problems:
        try:
            array = np.asarray(values)
        except ValueError:  # rows of different lengths
            array = None
        if array is not None and array.ndim == 2 and array.dtype.kind in "fiu":
            # A K' != K width is decided by the validation rule, for every row.
            return array if array.dtype.kind == "f" else array.astype(np.float64)
    rows = np.zeros((len(values), num_classes), dtype=np.float64)
    for i, value in enumerate(values):
        if i in problems:
            continue
        row, problem = _probability_row(value, num_classes)
        if problem is not None:
            problems[i] = problem
        else:
            rows[i] = row
    return rows


def _raw(value: Any) -> Any:
    """A value as an invalid record lists it."""
    if value is _MISSING:
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def elements_to_batch(
    elements: Sequence[Any],
    *,
    num_classes: int,
    id_field: Field,
    label_field: Field = DEFAULT_LABEL_FIELD,
    pred_probs_field: Optional[Field] = None,
    id_type: pa.DataType = pa.int64(),
    class_names: Optional[Sequence[str]] = None,
) -> ExampleBatch:
    """Shapes one list of per-example elements into an ``ExampleBatch``.

    Elements that cannot be shaped go to ``malformed`` with their reason, in order;
    a field whose kind can never fit raises ``TypeError``.
    """
    if pred_probs_field is None:
        pred_probs_field = "inference" if _is_prediction(elements[0]) else DEFAULT_PRED_PROBS_FIELD
    problems: Dict[int, str] = {}
    raw_ids = _read_field(elements, id_field)
    raw_labels = _read_field(elements, label_field)
    raw_probs = _read_field(elements, pred_probs_field)
    ids = _ids(raw_ids, id_field, id_type, problems)
    labels = _labels(raw_labels, label_field, class_names, problems)
    probs = _pred_probs(raw_probs, pred_probs_field, num_classes, problems)
    if not problems:
        return ExampleBatch(ids, labels, probs)
    bad = sorted(problems)
    malformed = tuple(
        MalformedRow(_raw(raw_ids[i]), problems[i], _raw(raw_labels[i]), _raw(raw_probs[i])) for i in bad
    )
    keep = np.ones(len(elements), dtype=bool)
    keep[bad] = False
    rows = np.flatnonzero(keep)
    return ExampleBatch(ids[rows], labels[rows], probs[rows], malformed)


@beam.typehints.with_output_types(ExampleBatch)
class _ShapeExampleBatch(beam.DoFn):
    """One list from ``BatchElements`` -> one ``ExampleBatch``."""

    def __init__(self, num_classes, label_field, pred_probs_field, id_field, id_type, class_names):
        self._settings = dict(
            num_classes=num_classes,
            label_field=label_field,
            pred_probs_field=pred_probs_field,
            id_field=id_field,
            id_type=id_type,
            class_names=class_names,
        )

    def process(self, elements: List[Any]):
        if elements:
            yield elements_to_batch(elements, **self._settings)


def _check_field(field: Any, role: str, transform: str) -> None:
    if not (isinstance(field, str) and field) and not callable(field):
        raise TypeError(f"{transform}: {role}_field must be a field name or a function of the element, got {field!r}")


class ExamplesToBatches(beam.PTransform):
    """Batches a PCollection of per-example elements into ``ExampleBatch`` elements.

    Example::

        batches = rows | ExamplesToBatches(3, id_field="id")   # beam.Row(id=, label=, pred_probs=)
        result = batches | FindLabelIssues(3, id_type=pa.int64())

    ``FindLabelIssuesInExamples`` does both and passes the id type on; use this
    transform when you want the batches themselves.

    Args:
      num_classes: K; every example's pred_probs must have K values.
      id_field: the field that identifies each example (integers or strings),
        carried to the outputs. Required: a PCollection has no order, so row
        numbers would differ from run to run and could not name an example.
      label_field: the given label: an integer class index, or a class name when
        ``class_names`` is given. Default ``label``.
      pred_probs_field: the K predicted probabilities. Default ``inference`` for
        RunInference results, else ``pred_probs``.
      id_type: ``pa.int64()`` or ``pa.string()``. Default: from the element type
        when Beam knows it (a schema'd Row, a NamedTuple, a dataclass, a keyed
        PredictionResult whose key type is known), else int64. Every batch is
        checked against it.
      class_names: one name per class, in class order: labels given as names are
        mapped to their index.
      batch_size: the most examples per batch (``BatchElements``' upper bound).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        id_field: Field,
        label_field: Field = DEFAULT_LABEL_FIELD,
        pred_probs_field: Optional[Field] = None,
        id_type: Optional[pa.DataType] = None,
        class_names: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
        label: Optional[str] = None,
    ):
        super().__init__(label)
        name = type(self).__name__
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        _check_field(label_field, "label", name)
        _check_field(id_field, "id", name)
        if pred_probs_field is not None:
            _check_field(pred_probs_field, "pred_probs", name)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self._num_classes = int(num_classes)
        self._label_field = label_field
        self._pred_probs_field = pred_probs_field
        self._id_field = id_field
        self._id_type = id_type
        self._class_names = tuple(class_names) if class_names is not None else None
        self._batch_size = int(batch_size) if batch_size is not None else DEFAULT_BATCH_SIZE

    def id_type_for(self, examples: beam.PCollection, transform: Optional[str] = None) -> pa.DataType:
        """The ids' type for this input, checked against its element type (TypeError if it cannot fit)."""
        transform = transform or type(self).__name__
        info = check_element_type(
            examples.element_type,
            self._label_field,
            self._pred_probs_field,
            self._id_field,
            self._class_names,
            transform,
        )
        return resolve_id_type(info, self._id_type, transform)

    def expand(self, examples):
        if not isinstance(examples, beam.PCollection):
            raise TypeError(f"apply {type(self).__name__} to a PCollection of examples")
        id_type = self.id_type_for(examples)
        return (
            examples
            | "BatchElements" >> beam.BatchElements(
                min_batch_size=self._batch_size, max_batch_size=self._batch_size
            )
            | "ShapeExampleBatch" >> beam.ParDo(
                _ShapeExampleBatch(
                    self._num_classes,
                    self._label_field,
                    self._pred_probs_field,
                    self._id_field,
                    id_type,
                    self._class_names,
                )
            )
        )


class FindLabelIssuesInExamples(beam.PTransform):
    """``FindLabelIssues`` on one element per example: dicts, ``beam.Row``, RunInference results.

    Example, right after RunInference with a ``KeyedModelHandler`` whose key
    carries the id and the given label::

        keyed = examples | beam.Map(lambda e: ({"id": e["id"], "label": e["label"]}, e["features"]))
        predictions = keyed | RunInference(KeyedModelHandler(model_handler))
        result = predictions | FindLabelIssuesInExamples(num_classes=3, id_field="id")
        result | WriteLabelIssues("label_issues_output")

    Args:
      options: a ``LabelIssuesOptions`` or the number of classes K; with
        ``class_names`` and no K, K is the number of names.
      id_field, label_field, pred_probs_field, id_type, batch_size: as in
        ``ExamplesToBatches``. The id type is decided when the pipeline is built,
        so the result (and ``WriteLabelIssues``) carries it.
      class_names: one name per class: labels given as names are mapped to
        their index, and the outputs get name columns.
      **settings: any field of ``LabelIssuesOptions``.

    Returns a ``LabelIssuesResult``, as ``FindLabelIssues`` does. On the local
    runner the batches are held between the three passes; for files, give
    ``FindLabelIssues`` a reader with ``source=`` instead, which reads them again.
    """

    def __init__(
        self,
        options: Union[LabelIssuesOptions, int, None] = None,
        *,
        id_field: Field,
        label_field: Field = DEFAULT_LABEL_FIELD,
        pred_probs_field: Optional[Field] = None,
        id_type: Optional[pa.DataType] = None,
        class_names: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
        label: Optional[str] = None,
        **settings: Any,
    ):
        super().__init__(label)
        if options is None and "num_classes" not in settings and class_names is not None:
            options = len(class_names)
        self._find = FindLabelIssues(options, class_names=class_names, **settings)
        self._to_batches = ExamplesToBatches(
            self._find.options.num_classes,
            id_field=id_field,
            label_field=label_field,
            pred_probs_field=pred_probs_field,
            id_type=id_type,
            class_names=class_names,
            batch_size=batch_size,
        )
        self._class_names = class_names

    @property
    def options(self) -> LabelIssuesOptions:
        return self._find.options

    def expand(self, examples) -> LabelIssuesResult:
        if not isinstance(examples, beam.PCollection):
            raise TypeError(f"apply {type(self).__name__} to a PCollection of examples")
        id_type = self._to_batches.id_type_for(examples, type(self).__name__)
        batches = examples | "ExamplesToBatches" >> self._to_batches
        find = FindLabelIssues(self._find.options, id_type=id_type, class_names=self._class_names)
        return batches | "FindLabelIssues" >> find


__all__ = [
    "ExamplesToBatches",
    "FindLabelIssuesInExamples",
    "elements_to_batch",
    "field_getter",
]

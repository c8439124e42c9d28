"""Which DICOM series of an archive to segment: rules over header tags, with a reason for every rejection.

A rules file (``--series-rules FILE``, YAML) lists alternatives; a series is selected when it meets every
condition of at least one of them::

    rules:
      - Modality: CT                  # text tag: a regular expression, full match, case-insensitive
        ImageType:                    # multi-valued tag: values that must all be present / must be absent
          include: [ORIGINAL, PRIMARY]
          exclude: [LOCALIZER, SCOUT, DERIVED, SECONDARY]
        plane: axial                  # derived: axial, coronal, sagittal (normal within 30 degrees) or oblique
        slices: ">= 10"               # derived: number of slices (frames)
        SliceThickness: "< 3"         # numeric tag: a comparison (<, <=, >, >=, ==, !=) or a range [min, max]
    one_per_study: true               # of several selected series in a study, keep the one with most slices

The default (:func:`default_rules`) is the block above with the model's modality, ``plane: axial`` for CT
only (MR models take any plane) and ``one_per_study: true``. Compared with MONAI Deploy's
DICOMSeriesSelectorOperator: text values are matched whole (``re.fullmatch``, not a search), ImageType
gets ``exclude`` beside MONAI's all-present list, ``plane`` and ``slices`` are computed from the geometry,
comparisons are written as strings, and the preference for the series with most instances is per study.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from volseg.dicom.archive import DicomSeries
from volseg.errors import VolsegError

_COMPARE = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_COMPARISON = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.]+(?:[eE]-?\d+)?)\s*$")
DERIVED = ("plane", "slices")
NUMERIC = {
    "slices",
    "SliceThickness",
    "SeriesNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "PixelSpacing",
}  # conditions on these must be comparisons, ranges or numbers
IDENTIFYING = {"AccessionNumber", "StudyDate"}  # tags a rule may test whose values a reason never quotes


class RulesError(VolsegError):
    """A rules file that cannot be used; the message names the file and the rule."""


@dataclass
class SeriesRules:
    alternatives: list[dict[str, Any]]
    one_per_study: bool = True
    source: str = "default rules"

    def reject_reason(self, series: DicomSeries) -> str | None:
        """None when some alternative accepts the series; else why each alternative refused it."""
        reasons = []
        for conditions in self.alternatives:
            failed = next((why for tag, want in conditions.items() if (why := _fails(series, tag, want))), None)
            if failed is None:
                return None
            reasons.append(failed)
        return "; ".join(dict.fromkeys(reasons))


@dataclass
class Selection:
    selected: list[DicomSeries] = field(default_factory=list)
    rejected: list[tuple[DicomSeries, str]] = field(default_factory=list)


def default_rules(modality: str, min_slices: int = 10) -> SeriesRules:
    conditions: dict[str, Any] = {
        "Modality": modality,
        "ImageType": {"include": ["ORIGINAL", "PRIMARY"], "exclude": ["LOCALIZER", "SCOUT", "DERIVED", "SECONDARY"]},
        "slices": f">= {min_slices}",
    }
    if modality.upper() == "CT":
        conditions["plane"] = "axial"
    return SeriesRules([conditions], one_per_study=True, source=f"default rules for {modality}")


def load_rules(path: str | Path) -> SeriesRules:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise RulesError(f"{path}: cannot read series rules ({' '.join(str(e).split())})") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list) or not raw["rules"]:
        raise RulesError(f"{path}: expected a mapping with a non-empty list 'rules:'")
    unknown = set(raw) - {"rules", "one_per_study"}
    if unknown:
        raise RulesError(f"{path}: unknown key(s) {sorted(unknown)}; expected 'rules' and 'one_per_study'")
    for i, conditions in enumerate(raw["rules"]):
        if not isinstance(conditions, dict) or not conditions:
            raise RulesError(f"{path}: rule {i + 1} must be a non-empty mapping of tag: condition")
        for tag, want in conditions.items():
            try:
                _check_condition(tag, want)
            except ValueError as e:
                raise RulesError(f"{path}: rule {i + 1}, {tag}: {e}") from e
    return SeriesRules(raw["rules"], bool(raw.get("one_per_study", True)), str(path))


def select(found: list[DicomSeries], rules: SeriesRules) -> Selection:
    """Apply the rules; with ``one_per_study`` keep the accepted series with most slices per study."""
    from volseg.dicom.archive import geometry_fault

    out = Selection()
    accepted: list[DicomSeries] = []
    for series in found:
        why = rules.reject_reason(series)
        if why is None and (fault := geometry_fault(series, found)) and fault.startswith("mixed image sizes"):
            why = fault  # the size groups of one series are not separate volumes
        if why:
            out.rejected.append((series, why))
        else:
            accepted.append(series)
    if not rules.one_per_study:
        out.selected = accepted
        return out
    by_study: dict[str, list[DicomSeries]] = {}
    for series in accepted:
        by_study.setdefault(series.study_uid, []).append(series)
    for group in by_study.values():
        best = max(group, key=lambda s: (s.slices, s.case_id))
        out.selected.append(best)
        for other in group:
            if other is not best:
                out.rejected.append(
                    (
                        other,
                        f"another series of the study was preferred ({best.case_id}, "
                        f"{best.slices} slices vs {other.slices})",
                    )
                )
    return out


def _check_condition(tag: str, want: Any) -> None:
    if tag == "ImageType":
        if isinstance(want, dict):
            if set(want) - {"include", "exclude"}:
                raise ValueError("use include: [...] and/or exclude: [...]")
            return
        if isinstance(want, list):
            return
    if isinstance(want, list):
        if len(want) != 2 or not all(isinstance(v, (int, float)) for v in want):
            raise ValueError(f"a range is [min, max] of numbers, got {want!r}")
        return
    if isinstance(want, str) and _COMPARISON.match(want):
        return
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return
    if tag in NUMERIC:
        raise ValueError(f"expected a comparison such as '>= 10' or a range [min, max], got {want!r}")
    try:
        re.compile(str(want))
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from e


def _value(series: DicomSeries, tag: str) -> Any:
    """What a condition on ``tag`` tests: the derived values, or the series' normalised tag view
    (:func:`volseg.dicom.archive.tag_view`), the same whether the series came from files or a PACS."""
    if tag == "plane":
        return series.plane
    if tag == "slices":
        return series.slices
    if tag == "Modality":
        return series.modality
    if tag == "ImageType":
        return series.image_type
    return series.tags.get(tag, "")


def _number(value: Any) -> float | None:
    """A view value as one number (a multi-valued tag: its first value); None when it is not a number."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).split("\\")[0])
    except ValueError:
        return None


def _text(value: Any) -> str:
    """A view value as the text a regular expression is matched against: values joined by a backslash as
    DICOM writes them, numbers written shortest (``2.5``, ``12``)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return "\\".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _fails(series: DicomSeries, tag: str, want: Any) -> str | None:
    """Why ``series`` fails the condition ``tag: want`` (one short phrase), or None."""
    have = _value(series, tag)
    if tag == "ImageType":
        include = want.get("include", []) if isinstance(want, dict) else want
        exclude = want.get("exclude", []) if isinstance(want, dict) else []
        values = {v.upper() for v in have}
        missing = [v for v in include if v.upper() not in values]
        present = [v for v in exclude if v.upper() in values]
        shown = "\\".join(have) or "<empty>"
        if missing:
            return f"ImageType {shown} lacks {'/'.join(missing)}"
        if present:
            return f"ImageType {shown} has {'/'.join(present)}"
        return None
    if (
        isinstance(want, list)
        or (isinstance(want, str) and _COMPARISON.match(want))
        or (isinstance(want, (int, float)) and not isinstance(want, bool))
    ):
        number = _number(have)
        if number is None:
            return f"{tag} missing or not a number" + ("" if tag in IDENTIFYING else f" ({_text(have)!r})")
        if isinstance(want, list):
            ok, wanted = want[0] <= number <= want[1], f"in [{want[0]}, {want[1]}]"
        elif isinstance(want, str):
            op, limit = _COMPARISON.match(want).groups()
            ok, wanted = _COMPARE[op](number, float(limit)), f"{op} {limit}"
        else:
            ok, wanted = number == want, f"== {want}"
        return None if ok else f"{tag} {number:g} not {wanted}"
    text = _text(have)
    if re.fullmatch(str(want), text, flags=re.IGNORECASE) is None:
        shown = "" if tag in IDENTIFYING else f" {text or '<empty>'!r}"  # an accession number is not printed
        return f"{tag}{shown} does not match {str(want)!r}"
    return None


_MODALITY = re.compile(r"^Modality '([^']*)' does not match '([^']*)'$")
_IMAGE_TYPE = re.compile(r"^ImageType \S+ (lacks|has) (\S+)$")
_SLICES = re.compile(r"^slices (\d+) not (.+)$")
_PLANE = re.compile(r"^plane '([^']*)' does not match '([^']*)'$")


def _series(n: int, verb: str = "") -> str:
    """'1 series is' / '3 series are' (verb 'is'), '2 series have' (verb 'have')."""
    if not verb:
        return f"{n} series"
    plural = {"is": "are", "has": "have", "lacks": "lack", "holds": "hold"}
    return f"{n} series {verb if n == 1 else plural.get(verb, verb)}"


def _them(n: int) -> str:
    return "it" if n == 1 else "them"


def _reason_group(reason: str) -> tuple[tuple, Any]:
    """(grouping key, phrase maker given the count) for one series' rejection reason."""
    first = reason.split("; ")[0]  # several alternatives: the first one's refusal stands for the series
    if m := _MODALITY.match(first):
        have, want = m.groups()
        have = have or "of no modality"
        model = f"a {have} model" if m[1] else "a model of its modality"
        return (
            "modality",
            have,
            want,
        ), lambda n: f"{_series(n, 'is')} {have} but the model expects {want} (pass --series-rules or {model})"
    if m := _IMAGE_TYPE.match(first):
        how, values = m.groups()
        if how == "has":
            return (
                ("imagetype", how, values),
                lambda n: (
                    f"{_series(n, 'is')} marked {values.replace('/', ' and ')}"
                    f" in ImageType (pass --series-rules to take {_them(n)})"
                ),
            )
        return (
            ("imagetype", how, values),
            lambda n: (
                f"{_series(n, 'lacks')} {values.replace('/', ' and ')} "
                f"in ImageType (pass --series-rules to take {_them(n)})"
            ),
        )
    if m := _SLICES.match(first):
        return ("slices", m[2]), lambda n: f"{_series(n, 'has')} too few slices (the rules want {m[2]})"
    if m := _PLANE.match(first):
        have, want = m.groups()
        return (
            "plane",
            have,
            want,
        ), lambda n: f"{_series(n, 'is')} {have}, not {want} (pass --series-rules to take {_them(n)})"
    if first.startswith("not an image series"):  # an RTSTRUCT, SEG, SR beside the images: listed last
        return ("not-image",), lambda n: f"{_series(n, 'holds')} no image (nothing to segment)"
    if first.startswith("mixed image sizes"):
        return ("mixed",), lambda n: f"{_series(n, 'mixes')} image sizes in one series (a localizer mixed in?)"
    return ("other", first), lambda n: f"{_series(n)}: {first}"


def why_none_selected(reasons, shown: int = 3) -> str:
    """The last line of a run that selected no series: the commonest rejection reasons with their counts,
    in words a user acts on, e.g. "no series selected: 1 series is CT but the model expects MR (pass
    --series-rules or a CT model)". ``reasons`` holds one rejection reason per series, as
    :meth:`SeriesRules.reject_reason` and :func:`select` give them (volseg's own words, no header value that
    identifies a patient)."""
    counts: dict[tuple, list] = {}
    for reason in reasons:
        if not reason:
            continue
        key, phrase = _reason_group(str(reason))
        counts.setdefault(key, [0, phrase])[0] += 1
    if not counts:
        return "no series selected"
    ranked = sorted(counts.items(), key=lambda kc: (kc[0] == ("not-image",), -kc[1][0]))  # ties: archive order
    ranked = [c for _, c in ranked]
    text = "; ".join(phrase(n) for n, phrase in ranked[:shown])
    rest = sum(n for n, _ in ranked[shown:])
    if rest:
        text += f"; {_series(rest)} for other reasons (see the record)"
    return f"no series selected: {text}"

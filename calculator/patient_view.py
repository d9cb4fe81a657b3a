"""The view for the patient (issue 12.3): per endpoint and option, an icon array of 100 people at one horizon, with
the numbers and their uncertainty in plain words.

Pure functions of a prediction (``prognosis.scoring.predict``) and the definitions; no Flask. The route is in
``calculator/views.py``, the page in ``templates/patient.html``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prognosis.covariates import DEFAULT_HORIZONS_MONTHS, ENDPOINTS, MODALITY, OPTIONS, Endpoint, options_text

# The horizons a patient can choose: the default landmarks that are whole years (1, 2, 3 and 5 years).
HORIZON_YEARS: tuple[int, ...] = tuple(int(m // 12) for m in DEFAULT_HORIZONS_MONTHS if m > 0 and m % 12 == 0)
DEFAULT_YEARS = 2 if 2 in HORIZON_YEARS else HORIZON_YEARS[0]
PEOPLE = 100
COLUMNS = 10  # icons per row: 10 rows of 10
ICON_WIDTH, ICON_HEIGHT = 10, 12  # one person in the icon array's view box (templates/patient.html draws it)

# The observational caveat (prognosis.notices.OBSERVATIONAL) in words for a patient.
PLAIN_OBSERVATIONAL = (
    "These numbers come from people treated in the past. Their doctors chose each treatment for reasons (for "
    "example, how far the illness had spread), so the people who had each treatment were different in other ways "
    "too. The numbers show what happened to people like you after each treatment; they are not the effects of the "
    f"treatments, and they do not say whether {options_text('or')} is the right choice for you."
)
PLAIN_SYNTHETIC = (
    "This is a demonstration. The numbers come from made-up patients, built to match a published study, not from "
    "real patients' records. Do not use them to decide about treatment."
)
# For a model updated from the demonstration one that keeps its effects (prognosis.provenance).
PLAIN_SYNTHETIC_DERIVED = (
    "This is a demonstration. The numbers were adjusted to real patients' records, but how much each detail matters "
    "still comes from made-up patients, built to match a published study. Do not use them to decide about "
    "treatment."
)

# Medical words that may appear in the definitions' wording: (word, meaning, stems that call for it). Explained on
# the page when, and only when, one of its stems occurs in what the page says.
GLOSSARY: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("hepatic", "of the liver", ("hepatic",)),
    ("progression", "the cancer growing or spreading", ("progression",)),
    ("metastases", "cancer that has spread from where it started", ("metasta",)),
    ("resection", "surgery to remove part of an organ", ("resection",)),
    ("ablation", "destroying a tumour with heat or cold", ("ablation",)),
    (
        "embolization",
        "treatment through a thin tube in a blood vessel that blocks the blood supply of tumours in the liver",
        ("emboli", "embolo"),
    ),
    ("chemoembolization", "embolization together with a cancer medicine", ("chemoemboli",)),
    ("radioembolization", "embolization with tiny radioactive beads", ("radioemboli",)),
    ("bland embolization", "embolization with beads alone, without a medicine", ("bland emboli",)),
)


@dataclass(frozen=True)
class Icon:
    x: float
    y: float
    filled: bool


@dataclass(frozen=True)
class OptionView:
    """One option at the chosen horizon: ``count`` of 100 people free of the event (None: not estimable)."""

    option: str
    label: str
    slot: int  # the option's position in OPTIONS: its colour (class option-<slot>)
    count: int | None
    headline: str  # "About 46 in 100"
    sentence: str
    uncertainty: str
    spoken: str  # the icon array for screen readers: "About 46 of 100 people were alive after 2 years: ..."
    icons: tuple[Icon, ...]
    few_similar: bool


@dataclass(frozen=True)
class EndpointView:
    name: str
    endpoint: Endpoint
    kept: str  # the legend of a filled icon: "Alive after 2 years"
    lost: str  # of an empty one: "Death within 2 years"
    options: tuple[OptionView, ...]
    note: str = ""  # what the pictures do not count, in plain words (competing_note)
    condition: str = ""  # under a condition: who is counted ("Only people who were still alive 1 year after …")


def years_text(years: int) -> str:
    return f"{years} year{'' if years == 1 else 's'}"


def time_text(months: float) -> str:
    """Months in plain words: '1 year', '18 months'."""
    return years_text(int(months // 12)) if months % 12 == 0 else f"{months:g} month{'' if months == 1 else 's'}"


def horizon_years(months: float | None) -> tuple[int, ...]:
    """The horizons a patient can choose: HORIZON_YEARS, or under a condition (``months`` already passed without
    the event) those after it."""
    return tuple(y for y in HORIZON_YEARS if months is None or 12.0 * y > months)


def default_years(offered: tuple[int, ...]) -> int:
    """The horizon shown first: DEFAULT_YEARS when offered, else the first one offered."""
    return DEFAULT_YEARS if DEFAULT_YEARS in offered or not offered else offered[0]


def competing_note(endpoint: Endpoint) -> str:
    """For an endpoint whose follow-up ends at another's event (``not_after``: hepatic progression is looked for only
    while the patient is alive), what its pictures leave out, from the definitions' words: 'A death without hepatic
    progression is not counted here: these pictures are about being free of hepatic progression, not about being
    alive (shown separately).' Empty for any other endpoint."""
    if endpoint.not_after is None or endpoint.not_after not in ENDPOINTS:
        return ""
    other = ENDPOINTS[endpoint.not_after]
    return (
        f"A {other.event_label} without {endpoint.event_label} is not counted here: these pictures are about "
        f"being {endpoint.free_of}, not about being {other.free_of} (shown separately)."
    )


def condition_months(prediction: Mapping) -> dict[str, float]:
    """Per endpoint, the months already passed without its event (empty: unconditional)."""
    condition = prediction.get("condition") or {}
    return {name: float(entry["months"]) for name, entry in condition.items()}


def condition_words(prediction: Mapping) -> str:
    """Under a condition, who the numbers are about, in plain words (empty otherwise)."""
    months = set(condition_months(prediction).values())
    if not months:
        return ""
    when = time_text(min(months))
    return (
        f"You are {when} past your treatment, so these numbers are only about people who got that far after "
        "theirs. The years are still counted from the treatment."
    )


def _in_100(p: float) -> tuple[int, str]:
    """Whole people out of 100, and as a number in words that never rounds to 0 or 100 when it is not."""
    count = min(PEOPLE, max(0, round(PEOPLE * p)))
    if count == 0:
        return 0, "fewer than 1"
    if count == PEOPLE and p < 1.0:
        return PEOPLE, "more than 99"
    return count, f"{count}"


def in_100(p: float) -> tuple[int, str]:
    """A probability as whole people out of 100 and in words: (46, 'about 46'); never 'about 0' or 'about 100'
    when it is not: (0, 'fewer than 1'), (100, 'more than 99')."""
    count, words = _in_100(p)
    return count, words if words.startswith(("fewer", "more")) else f"about {words}"


def uncertainty_text(lower: float, upper: float) -> str:
    """The 95% interval in words: 'It could be as few as 38 or as many as 53 in 100.'"""
    (low_count, low), (_, high) = _in_100(lower), _in_100(upper)
    if high == "fewer than 1" or low == "more than 99":
        return f"Even allowing for this, it is {high if high == 'fewer than 1' else low} in 100."
    if low == high:
        return f"Even allowing for this, it is about {low} in 100."
    few = "fewer than 1" if low_count == 0 else f"as few as {low}"
    many = high if high == "more than 99" else f"as many as {high}"
    return f"It could be {few} or {many} in 100."


def icon_grid(count: int) -> tuple[Icon, ...]:
    """100 people in rows of COLUMNS, the first ``count`` (from the top left, row by row) filled."""
    return tuple(
        Icon(x=(i % COLUMNS) * ICON_WIDTH, y=(i // COLUMNS) * ICON_HEIGHT, filled=i < count) for i in range(PEOPLE)
    )


def option_view(
    option: str, endpoint: Endpoint, point: Mapping | None, years: int, few_similar: bool, after: float | None = None
) -> OptionView:
    """One option from its landmark ``point`` at ``years`` (None, or a survival of None: beyond the follow-up);
    ``after``: the months already passed without the event, under a condition."""
    label = MODALITY.label_of(option)
    slot = OPTIONS.index(option)
    when = years_text(years)
    if point is None or point.get("survival") is None:
        text = f"Not known at {when}: the people in the data were not followed for that long after {label}."
        return OptionView(option, label, slot, None, "Not known", text, "", text, (), few_similar)
    count, words = in_100(point["survival"])
    verb = "was" if words == "about 1" else "were"
    who = f"Out of 100 people like you who had {label} in the past"
    still, later, of_100 = "", f"{when} later", "of 100 people"
    if after is not None:
        who += f" and were still {endpoint.free_of} {time_text(after)} after it"
        still, later = "still ", f"{when} after it"
        of_100 = f"of 100 people still {endpoint.free_of} after {time_text(after)}"
    if words.startswith(("fewer", "more")):  # "almost none (fewer than 1 in 100)": never "about 0" or "about 100"
        almost = "almost none" if count == 0 else "almost all"
        sentence = f"{who}, {almost} were {still}{endpoint.free_of} {later} ({words} in 100)."
    else:
        sentence = f"{who}, {words} {verb} {still}{endpoint.free_of} {later}."
    uncertainty = "We cannot be exact. " + uncertainty_text(point["ci_lower"], point["ci_upper"])
    figures = (
        "none of the 100 figures is filled"
        if count == 0
        else "all 100 figures are filled"
        if count == PEOPLE
        else f"{count} filled figure{'' if count == 1 else 's'} and {PEOPLE - count} "
        f"empty one{'' if PEOPLE - count == 1 else 's'}"
    )
    spoken = f"{words.capitalize()} {of_100} {verb} {still}{endpoint.free_of} after {when}: {figures}."
    return OptionView(
        option,
        label,
        slot,
        count,
        f"{words.capitalize()} in 100",
        sentence,
        uncertainty,
        spoken,
        icon_grid(count),
        few_similar,
    )


def patient_view(prediction: Mapping, years: int) -> list[EndpointView]:
    """Each endpoint's options at ``years`` (one of HORIZON_YEARS), from a prediction at the default horizons
    (conditional or not: its ``condition`` says)."""
    months = 12.0 * years
    few = set(prediction["few_similar"])
    conditions = condition_months(prediction)
    views = []
    for name, endpoint in ENDPOINTS.items():
        after = conditions.get(name)
        options = []
        for option in OPTIONS:
            landmarks = prediction["predictions"][name][option]["landmarks"]
            point = next((p for p in landmarks if p["months"] == months), None)
            options.append(option_view(option, endpoint, point, years, option in few, after))
        when = years_text(years)
        counted = (
            f"Only people who were still {endpoint.free_of} {time_text(after)} after their treatment are counted here."
            if after is not None
            else ""
        )
        views.append(
            EndpointView(
                name,
                endpoint,
                f"{endpoint.free_of.capitalize()} after {when}",
                f"{endpoint.event_label.capitalize()} within {when}",
                tuple(options),
                competing_note(endpoint),
                counted,
            )
        )
    return views


def glossary(texts: list[str]) -> list[tuple[str, str]]:
    """The GLOSSARY entries one of whose stems occurs in ``texts``: (word, meaning)."""
    joined = " ".join(texts).lower()
    return [(word, meaning) for word, meaning, stems in GLOSSARY if any(stem in joined for stem in stems)]

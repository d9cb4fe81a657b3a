"""Registry loading: every bad-data rule of registry-schema.md, and equivalence of the four source formats."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import sqlalchemy as sa
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from prognosis import covariates as cv
from registry import (
    HPFS_OS_TOLERANCE_MONTHS,
    Registry,
    RegistryError,
    endpoint_frame,
    load_registry,
    read_table,
)

# ---------------------------------------------------------------------------------------------------------------
# Fixture data: eight patients, written with aliases so that loading also exercises normalization.

IDS = [f"PX-{1001 + i}" for i in range(8)]


def base_frame() -> pd.DataFrame:
    """A valid registry with every column; row i is spreadsheet row i + 2."""
    return pd.DataFrame(
        {
            "patient_id": IDS,
            "who_grade": ["1", "2", "3", "G1", "g2", "Grade 3", "1", "2"],
            "tumor_burden": ["<25%", "25-50%", "50-75%", ">75%", "< 25%", "25-50", "<25%", "50-75%"],
            "prior_resection_ablation": ["0", "1", "yes", "no", "true", "false", "0", "1"],
            "modality": ["TACE", "SIRT", "TAE", "cTACE", "Y90", "bland", "TARE", "radioembolization"],
            "tumor_type": ["pancreatic", "gut", "bronchial", "other", "pancreas", "small bowel", "lung", "PNET"],
            "extrahepatic_metastases": ["0", "1", "0", "1", "0", "1", "0", "1"],
            "octreotide": ["1", "1", "0", "0", "1", "1", "0", "0"],
            "biologic": ["0", "0", "0", "1", "0", "0", "1", "0"],
            "cytotoxic": ["0", "1", "0", "0", "0", "1", "0", "0"],
            "hpfs_months": [3.5, 12.0, 7.25, 20.0, 1.1, 30.0, 9.0, 15.0],
            "hpfs_event": [1, 0, 1, 1, 1, 0, 1, 0],
            "os_months": [10.0, 24.0, 7.3, 40.0, 5.0, 30.05, 18.0, 15.0],
            "os_event": [0, 1, 1, 0, 1, 0, 1, 0],
        }
    )


EXPECTED = {  # the same eight rows in canonical levels
    "who_grade": ["1", "2", "3", "1", "2", "3", "1", "2"],
    "tumor_burden": ["<25%", "25-50%", "50-75%", ">75%", "<25%", "25-50%", "<25%", "50-75%"],
    "prior_resection_ablation": ["0", "1", "1", "0", "1", "0", "0", "1"],
    "modality": ["TACE", "SIRT", "TAE", "TACE", "SIRT", "TAE", "SIRT", "SIRT"],
    "tumor_type": ["pancreatic", "gut", "bronchial", "other", "pancreatic", "gut", "bronchial", "pancreatic"],
}


def text_frame() -> pd.DataFrame:
    """base_frame with every cell as text, so a case can put any text anywhere without dtype warnings."""
    return base_frame().astype(str).astype(object)


def write_csv(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


# Edits used by the case table; each returns a new frame.
def put(column: str, rows: dict[int, object]):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for i, value in rows.items():
            frame.loc[i, column] = value
        return frame

    return edit


def drop(*columns: str):
    return lambda frame: frame.drop(columns=list(columns))


def chain(*edits):
    def edit(frame):
        for e in edits:
            frame = e(frame)
        return frame

    return edit


def with_pct(values: list[object]):
    """Replace tumor_burden by tumor_burden_pct."""

    def edit(frame):
        frame = frame.drop(columns=["tumor_burden"])
        frame.insert(2, "tumor_burden_pct", [str(v) for v in values])
        return frame

    return edit


PCT_OK = [10, 30, 60, 80, 0, 49.99, 24.9, 75]  # agrees with base tumor_burden


def add_column(name: str, values):
    def edit(frame):
        frame = frame.copy()
        frame[name] = values
        return frame

    return edit


def rows_text(rows: tuple[int, ...]) -> str:
    return f"row {rows[0]}" if len(rows) == 1 else "rows " + ", ".join(map(str, rows))


# (id, edit, column the message must name, spreadsheet rows it must name, load_registry kwargs, more text)
BAD = [
    ("unknown-grade", put("who_grade", {1: "G4", 5: "G4"}), "who_grade", (3, 7), {}, "'G4'"),
    ("unknown-burden", put("tumor_burden", {0: "80%"}), "tumor_burden", (2,), {}, "'80%'"),
    ("unknown-modality", put("modality", {2: "surgery"}), "modality", (4,), {}, "allowed: TACE, SIRT, TAE"),
    ("unknown-binary", put("prior_resection_ablation", {3: "maybe"}), "prior_resection_ablation", (5,), {}, ""),
    ("unknown-tumor-type", put("tumor_type", {4: "liver"}), "tumor_type", (6,), {}, "pancreatic"),
    ("unknown-optional-binary", put("octreotide", {5: "2"}), "octreotide", (7,), {}, "'2'"),
    ("missing-grade", put("who_grade", {6: ""}), "who_grade", (8,), {}, "missing"),
    ("missing-modality", put("modality", {0: "NA"}), "modality", (2,), {}, "missing"),
    ("missing-optional-present", put("cytotoxic", {2: ""}), "cytotoxic", (4,), {}, "missing"),
    ("missing-patient-id", put("patient_id", {7: ""}), "patient_id", (9,), {}, "missing"),
    ("missing-burden", put("tumor_burden", {1: " "}), "tumor_burden", (3,), {}, "missing"),
    ("zero-time", put("hpfs_months", {0: "0"}), "hpfs_months", (2,), {}, "greater than 0"),
    ("negative-time", put("os_months", {1: "-3"}), "os_months", (3,), {}, "greater than 0"),
    ("text-time", put("os_months", {2: "twelve"}), "os_months", (4,), {}, "not a number"),
    ("infinite-time", put("hpfs_months", {3: "inf"}), "hpfs_months", (5,), {}, ""),
    ("event-2", put("hpfs_event", {4: "2"}), "hpfs_event", (6,), {}, "0 or 1"),
    ("event-half", put("os_event", {5: "0.5"}), "os_event", (7,), {}, "0 or 1"),
    ("time-without-event", put("hpfs_event", {6: ""}), "hpfs_event", (8,), {}, "hpfs_months is given"),
    ("event-without-time", put("os_months", {7: ""}), "os_months", (9,), {}, "os_event is given"),
    ("hpfs-after-os", put("hpfs_months", {2: "7.41"}), "hpfs_months", (4,), {}, str(HPFS_OS_TOLERANCE_MONTHS)),
    ("duplicate-id", put("patient_id", {4: IDS[1]}), "patient_id", (3, 6), {}, "duplicate"),
    ("no-grade-column", drop("who_grade"), "who_grade", (), {}, "absent"),
    ("no-modality-column", drop("modality"), "modality", (), {}, "absent"),
    ("no-burden-column", drop("tumor_burden"), "tumor_burden", (), {}, "tumor_burden_pct"),
    ("no-id-column", drop("patient_id"), "patient_id", (), {}, "absent"),
    ("half-endpoint-columns", drop("os_event"), "os_event", (), {}, "os_months"),
    (
        "no-endpoint-columns",
        drop("hpfs_months", "hpfs_event", "os_months", "os_event"),
        "hpfs_months",
        (),
        {},
        "os_event",
    ),
    ("pct-above-100", with_pct([10, 100.5, 60, 80, 0, 30, 20, 60]), "tumor_burden_pct", (3,), {}, "0-100"),
    ("pct-negative", with_pct([10, 30, -1, 80, 0, 30, 20, 60]), "tumor_burden_pct", (4,), {}, "0-100"),
    ("pct-text", with_pct([10, 30, 60, "lots", 0, 30, 20, 60]), "tumor_burden_pct", (5,), {}, "not a number"),
    ("pct-missing", with_pct([10, 30, 60, 80, 0, 30, "", 60]), "tumor_burden_pct", (8,), {}, "missing"),
    (
        "pct-disagrees",
        add_column("tumor_burden_pct", [str(v) for v in [50] + PCT_OK[1:]]),
        "tumor_burden",
        (2,),
        {},
        "disagrees",
    ),
    ("formula", put("who_grade", {0: "=1+1"}), "who_grade", (2,), {}, "formula"),
    ("injection-at", put("modality", {3: "@SUM(A1)"}), "modality", (5,), {}, "formula"),
    ("injection-minus", put("tumor_type", {4: "-x"}), "tumor_type", (6,), {}, "formula"),
    ("injection-plus", put("patient_id", {5: "+cmd|' /C calc'!A0"}), "patient_id", (7,), {}, "formula"),
    ("formula-in-time", put("os_months", {6: "=B2*2"}), "os_months", (8,), {}, "formula"),
    (
        "no-outcome",
        chain(
            put("hpfs_months", {3: ""}), put("hpfs_event", {3: ""}), put("os_months", {3: ""}), put("os_event", {3: ""})
        ),
        "hpfs_months",
        (5,),
        {},
        "no outcome",
    ),
    ("duplicate-column", add_column(" WHO_Grade ", ["1"] * 8), "who_grade", (), {}, "duplicate"),
    (
        "mapped-duplicate",
        add_column("Grade", ["1"] * 8),
        "who_grade",
        (),
        {"columns": {"Grade": "who_grade"}},
        "duplicate",
    ),
    ("mapping-unknown-target", lambda f: f, "who_grades", (), {"columns": {"Grade": "who_grades"}}, "unknown"),
    ("many-rows", put("who_grade", dict.fromkeys(range(8), "G9")), "who_grade", (2, 3, 4, 5, 6), {}, "and 3 more"),
]


@pytest.mark.parametrize(
    ("edit", "column", "rows", "kwargs", "more"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_registry(tmp_path, edit, column, rows, kwargs, more):
    source = write_csv(edit(text_frame()), tmp_path / "registry.csv")
    with pytest.raises(RegistryError) as caught:
        load_registry(source, **kwargs)
    message = str(caught.value)
    assert column in message
    if rows:
        assert rows_text(rows) in message
        assert "header = row 1" in message  # says how rows are numbered
    assert more in message
    assert not any(pid in message for pid in IDS if pid not in more)  # hospital privacy: no patient ids


def test_bad_case_table_is_large_and_distinct():
    assert len(BAD) >= 25
    assert len({case[0] for case in BAD}) == len(BAD)


def test_missing_rows_listed_in_one_error_per_column(tmp_path):
    frame = chain(put("who_grade", {0: "", 3: ""}), put("modality", {2: ""}), put("tumor_type", {1: "liver"}))(
        text_frame()
    )
    with pytest.raises(RegistryError) as caught:
        load_registry(write_csv(frame, tmp_path / "r.csv"))
    message = str(caught.value)
    assert "3 problems" in message
    assert "column 'who_grade': missing value in rows 2, 5" in message
    assert "column 'modality': missing value in row 4" in message
    assert "'liver' in row 3" in message
    assert len(caught.value.problems) == 3


# ---------------------------------------------------------------------------------------------------------------
# Sources that cannot be read at all


def test_empty_file(tmp_path):
    (tmp_path / "r.csv").write_bytes(b"")
    with pytest.raises(RegistryError, match="empty"):
        load_registry(str(tmp_path / "r.csv"))


def test_header_only(tmp_path):
    write_csv(text_frame().iloc[:0], tmp_path / "r.csv")
    with pytest.raises(RegistryError, match="no data rows"):
        load_registry(str(tmp_path / "r.csv"))


def test_not_utf8(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(
        text_frame()
        .assign(tumor_type="other")
        .replace({"other": "Pankreas-Müller"})
        .to_csv(index=False)
        .encode("latin-1")
    )
    with pytest.raises(RegistryError, match="not UTF-8"):
        load_registry(str(path))


def test_utf8_bom_and_semicolons(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(base_frame().to_csv(index=False, sep=";").encode("utf-8-sig"))
    assert load_registry(str(path)).frame["who_grade"].tolist() == EXPECTED["who_grade"]


def test_unknown_extension(tmp_path):
    (tmp_path / "r.xls").write_bytes(b"whatever")
    with pytest.raises(RegistryError) as caught:
        load_registry(str(tmp_path / "r.xls"))
    assert all(ext in str(caught.value) for ext in (".csv", ".xlsx", ".parquet", "SQLAlchemy"))


def test_missing_file(tmp_path):
    with pytest.raises(RegistryError, match="no such file"):
        load_registry(str(tmp_path / "absent.csv"))


def test_corrupt_xlsx(tmp_path):
    path = write_xlsx(base_frame(), tmp_path / "r.xlsx")
    data = (tmp_path / "r.xlsx").read_bytes()
    (tmp_path / "r.xlsx").write_bytes(data[: len(data) // 2])
    with pytest.raises(RegistryError, match="not a readable .xlsx"):
        load_registry(path)


def test_corrupt_parquet(tmp_path):
    (tmp_path / "r.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RegistryError, match="not a readable Parquet"):
        load_registry(str(tmp_path / "r.parquet"))


def test_misaligned_csv_row(tmp_path):
    path = tmp_path / "r.csv"
    lines = text_frame().to_csv(index=False).splitlines()
    lines[3] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RegistryError, match=r"more cells than header columns in row 4 "):
        load_registry(str(path))


def test_table_only_for_sql(tmp_path):
    with pytest.raises(RegistryError, match="table name"):
        load_registry(write_csv(base_frame(), tmp_path / "r.csv"), table="registry")


# ---------------------------------------------------------------------------------------------------------------
# XLSX specifics: real formulas and error cells, found by cell type


def write_xlsx(frame: pd.DataFrame, path) -> str:
    frame.to_excel(path, index=False, sheet_name="registry")
    return str(path)


def test_xlsx_formula_cell(tmp_path):
    path = write_xlsx(base_frame(), tmp_path / "r.xlsx")
    book = openpyxl.load_workbook(path)
    book.active["K5"] = "=A2*2"  # hpfs_months of the fourth patient: sheet row 5
    book.save(path)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    assert "column 'hpfs_months'" in str(caught.value) and "row 5 " in str(caught.value)
    assert "formula" in str(caught.value)


def test_xlsx_error_cell_and_blank_rows_before_header(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    frame = base_frame()
    sheet.append([])
    sheet.append([])  # header in row 3
    sheet.append(list(frame.columns))
    for record in frame.itertuples(index=False):
        sheet.append(list(record))
    sheet["B6"].value = "#N/A"
    sheet["B6"].data_type = "e"
    book.save(tmp_path / "r.xlsx")
    with pytest.raises(RegistryError) as caught:
        load_registry(str(tmp_path / "r.xlsx"))
    assert "column 'who_grade'" in str(caught.value) and "row 6 " in str(caught.value)
    assert "header = row 3" in str(caught.value)


def test_xlsx_sheet_by_name(tmp_path):
    path = tmp_path / "r.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"notes": ["x"]}).to_excel(writer, sheet_name="readme", index=False)
        base_frame().to_excel(writer, sheet_name="data", index=False)
    assert len(load_registry(str(path), table="data").frame) == 8
    with pytest.raises(RegistryError, match="no sheet named 'other'"):
        load_registry(str(path), table="other")
    with pytest.raises(RegistryError, match="required column"):
        load_registry(str(path))  # the first sheet is not the registry


# ---------------------------------------------------------------------------------------------------------------
# Parquet and SQL specifics


def sqlite_url(frame: pd.DataFrame, path, table: str = "registry") -> str:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        frame.to_sql(table, engine, index=False)
    finally:
        engine.dispose()
    return f"sqlite:///{path}"


def test_parquet_rows_are_records(tmp_path):
    frame = base_frame()
    frame.loc[2, "os_months"] = -1.0
    frame.to_parquet(tmp_path / "r.parquet", index=False)
    with pytest.raises(RegistryError) as caught:
        load_registry(str(tmp_path / "r.parquet"))
    assert "column 'os_months'" in str(caught.value) and "row 3 (record numbers" in str(caught.value)


def test_parquet_with_patient_id_index(tmp_path):
    base_frame().set_index("patient_id").to_parquet(tmp_path / "r.parquet")
    assert load_registry(str(tmp_path / "r.parquet")).frame["patient_id"].tolist() == IDS
    base_frame().iloc[2:].to_parquet(tmp_path / "s.parquet")  # unnamed, non-range index: not data
    registry = load_registry(str(tmp_path / "s.parquet"))
    assert registry.frame["patient_id"].tolist() == IDS[2:] and registry.report["ignored_columns"] == []


def test_sql_errors(tmp_path):
    url = sqlite_url(base_frame(), tmp_path / "r.db")
    with pytest.raises(RegistryError, match="needs a table name"):
        load_registry(url)
    with pytest.raises(RegistryError, match="no table named 'patients'"):
        load_registry(url, table="patients")
    with pytest.raises(RegistryError, match="no such database file"):
        load_registry(f"sqlite:///{tmp_path / 'absent.db'}", table="registry")
    assert not (tmp_path / "absent.db").exists()
    empty = sqlite_url(base_frame().iloc[:0], tmp_path / "empty.db")
    with pytest.raises(RegistryError, match="no data rows"):
        load_registry(empty, table="registry")


def test_sql_bad_value_rows_are_records(tmp_path):
    frame = base_frame()
    frame.loc[4, "modality"] = "surgery"
    url = sqlite_url(frame, tmp_path / "r.db")
    with pytest.raises(RegistryError) as caught:
        load_registry(url, table="registry")
    assert "column 'modality'" in str(caught.value) and "'surgery' in row 5 " in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# Good paths


def test_four_formats_load_identically(tmp_path):
    frame = base_frame()
    sources = {
        "csv": (write_csv(frame, tmp_path / "r.csv"), None),
        "xlsx": (write_xlsx(frame, tmp_path / "r.xlsx"), None),
        "parquet": (str(tmp_path / "r.parquet"), None),
        "sql": (sqlite_url(frame, tmp_path / "r.db"), "registry"),
    }
    frame.to_parquet(tmp_path / "r.parquet", index=False)
    loaded = {fmt: load_registry(src, table=table) for fmt, (src, table) in sources.items()}
    reference = loaded["csv"]
    varying = ("source", "format", "table", "row_numbering")
    for fmt, registry in loaded.items():
        assert registry.report["format"] == fmt
        pd.testing.assert_frame_equal(registry.frame, reference.frame)
        assert registry.optional == reference.optional == cv.OPTIONAL
        assert {k: v for k, v in registry.report.items() if k not in varying} == {
            k: v for k, v in reference.report.items() if k not in varying
        }
    for fmt in ("csv", "xlsx", "parquet"):
        path = sources[fmt][0]
        assert loaded[fmt].sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    # SQL: the rows as read, CSV with sorted columns
    raw = read_table(sources["sql"][0], table="registry")
    canonical = raw[sorted(raw.columns)].to_csv(index=False, lineterminator="\n").encode()
    assert loaded["sql"].sha256 == hashlib.sha256(canonical).hexdigest()


def test_frame_contents_and_types(tmp_path):
    registry = load_registry(write_csv(base_frame(), tmp_path / "r.csv"))
    frame = registry.frame
    assert isinstance(registry, Registry)
    assert list(frame.columns) == [
        "patient_id",
        *cv.REQUIRED,
        *cv.OPTIONAL,
        "modality",
        "hpfs_months",
        "hpfs_event",
        "os_months",
        "os_event",
    ]
    assert frame["patient_id"].tolist() == IDS  # source order kept
    for name, levels in EXPECTED.items():
        assert frame[name].tolist() == levels, name
    assert frame["hpfs_months"].dtype == np.float64 and str(frame["hpfs_event"].dtype) == "Int64"
    assert frame["os_event"].tolist() == base_frame()["os_event"].tolist()
    report = registry.report
    assert report["rows_read"] == 8 and report["rows_used"] == {"hpfs": 8, "os": 8}
    assert report["excluded"] == [] and report["endpoint_missing"] == {"hpfs": 0, "os": 0}
    assert report["endpoint_order_tolerance_months"] == HPFS_OS_TOLERANCE_MONTHS


def test_aliases_normalize(tmp_path):
    frame = text_frame()
    frame["who_grade"] = ["G1", "grade 2", "3.0", "g3", "2", "1", "G2", "GRADE 3"]
    frame["modality"] = ["ctace", "Y-90", "Bland", "tace", "SIRT", "tae", "y90", "TARE"]
    frame["prior_resection_ablation"] = ["Yes", "NO", "True", "f", "1.0", "0", "y", "n"]
    frame["tumor_burden"] = ["<25", "25–50%", "50-75", ">75", "> 75%", "< 25%", "25-50%", "50–75%"]
    frame["tumor_type"] = ["Pancreas", "GI", "bronchopulmonary", "Other", "pnet", "Small Bowel", "Lung", "gut"]
    registry = load_registry(write_csv(frame, tmp_path / "r.csv"))
    got = registry.frame
    assert got["who_grade"].tolist() == ["1", "2", "3", "3", "2", "1", "2", "3"]
    assert got["modality"].tolist() == ["TACE", "SIRT", "TAE", "TACE", "SIRT", "TAE", "SIRT", "SIRT"]
    assert got["prior_resection_ablation"].tolist() == ["1", "0", "1", "0", "1", "0", "1", "0"]
    assert got["tumor_burden"].tolist() == ["<25%", "25-50%", "50-75%", ">75%", ">75%", "<25%", "25-50%", "50-75%"]
    assert got["tumor_type"].tolist() == [
        "pancreatic",
        "gut",
        "bronchial",
        "other",
        "pancreatic",
        "gut",
        "bronchial",
        "gut",
    ]


@pytest.mark.parametrize(
    ("pct", "level"),
    [
        (0, "<25%"),
        (24.9, "<25%"),
        (25, "25-50%"),
        (49.99, "25-50%"),
        (50, "50-75%"),
        (75, "50-75%"),
        (75.01, ">75%"),
        (100, ">75%"),
    ],
)
def test_burden_pct_binning_edges(tmp_path, pct, level):
    frame = with_pct([pct] * 8)(text_frame())
    registry = load_registry(write_csv(frame, tmp_path / "r.csv"))
    assert registry.frame["tumor_burden"].tolist() == [level] * 8
    assert "tumor_burden_pct" not in registry.frame.columns


def test_burden_both_columns_agree(tmp_path):
    frame = add_column("tumor_burden_pct", [str(v) for v in PCT_OK])(text_frame())
    frame.loc[2, "tumor_burden"] = ""  # filled from the percentage
    registry = load_registry(write_csv(frame, tmp_path / "r.csv"))
    assert registry.frame["tumor_burden"].tolist() == EXPECTED["tumor_burden"]


def test_column_mapping_from_toml(tmp_path):
    site = {
        "Pat-Nr": "patient_id",
        "Grading": "who_grade",
        "Lebertumorlast %": "tumor_burden_pct",
        "Vor-OP": "prior_resection_ablation",
        "Verfahren": "modality",
        "PFS Leber": "hpfs_months",
        "Progress": "hpfs_event",
        "OS": "os_months",
        "Tod": "os_event",
        "Unbenutzt": "cytotoxic",
    }
    frame = with_pct(PCT_OK)(text_frame())[
        [
            "patient_id",
            "who_grade",
            "tumor_burden_pct",
            "prior_resection_ablation",
            "modality",
            "hpfs_months",
            "hpfs_event",
            "os_months",
            "os_event",
        ]
    ]
    frame.columns = [
        " PAT-NR",
        "grading",
        "Lebertumorlast %",
        "Vor-OP",
        "Verfahren",
        "PFS Leber",
        "Progress",
        "OS",
        "Tod",
    ]
    frame["Bemerkung"] = "x"
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(tomli_w.dumps({"columns": site}))
    source = write_csv(frame, tmp_path / "r.csv")
    registry = load_registry(source, columns=mapping)
    assert registry.frame["who_grade"].tolist() == EXPECTED["who_grade"]
    assert registry.frame["tumor_burden"].tolist() == EXPECTED["tumor_burden"]
    assert registry.optional == ()
    assert registry.report["ignored_columns"] == ["Bemerkung"]
    assert registry.report["unused_mapping_entries"] == ["unbenutzt"]
    same = load_registry(source, columns=site)  # a dict works the same
    pd.testing.assert_frame_equal(same.frame, registry.frame)
    str_path = load_registry(source, columns=str(mapping))
    pd.testing.assert_frame_equal(str_path.frame, registry.frame)


def test_bad_mapping_files(tmp_path):
    source = write_csv(base_frame(), tmp_path / "r.csv")
    (tmp_path / "m.toml").write_text("[columns\n")
    with pytest.raises(RegistryError, match="not a valid"):
        load_registry(source, columns=tmp_path / "m.toml")
    (tmp_path / "m.toml").write_text('grade = "who_grade"\n')
    with pytest.raises(RegistryError, match=r"\[columns\]"):
        load_registry(source, columns=tmp_path / "m.toml")
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(source, columns=tmp_path / "absent.toml")


def test_column_names_ignore_case_and_spaces(tmp_path):
    frame = base_frame()
    frame.columns = [f"  {c.upper()} " for c in frame.columns]
    frame["Comment"] = "x"
    registry = load_registry(write_csv(frame, tmp_path / "r.csv"))
    assert registry.frame["modality"].tolist() == EXPECTED["modality"]
    assert registry.report["ignored_columns"] == ["Comment"]


def test_drop_incomplete_excludes_and_counts(tmp_path):
    frame = chain(
        put("who_grade", {0: "", 3: ""}),
        put("modality", {3: "NA"}),
        put("cytotoxic", {5: ""}),
        put("hpfs_months", {6: ""}),
        put("hpfs_event", {6: ""}),
        put("os_months", {6: ""}),
        put("os_event", {6: ""}),
    )(text_frame())
    source = write_csv(frame, tmp_path / "r.csv")
    with pytest.raises(RegistryError):
        load_registry(source)
    registry = load_registry(source, drop_incomplete=True)
    assert registry.frame["patient_id"].tolist() == [IDS[i] for i in (1, 2, 4, 7)]
    report = registry.report
    assert report["rows_read"] == 8
    assert sorted(report["excluded"], key=lambda e: e["reason"]) == [
        {"reason": "missing an outcome (no hpfs or os time and event)", "rows": 1},
        {"reason": "missing cytotoxic", "rows": 1},
        {"reason": "missing who_grade", "rows": 1},
        {"reason": "missing who_grade, modality", "rows": 1},
    ]
    assert sum(e["rows"] for e in report["excluded"]) + len(registry.frame) == report["rows_read"]
    assert report["rows_used"] == {"hpfs": 4, "os": 4}


def test_drop_incomplete_leaving_nothing(tmp_path):
    frame = put("modality", dict.fromkeys(range(8), ""))(text_frame())
    with pytest.raises(RegistryError, match="no usable rows.*missing modality: 8"):
        load_registry(write_csv(frame, tmp_path / "r.csv"), drop_incomplete=True)


def test_drop_incomplete_does_not_excuse_errors(tmp_path):
    frame = chain(put("who_grade", {0: ""}), put("modality", {1: "surgery"}))(text_frame())
    with pytest.raises(RegistryError, match="'surgery' in row 3"):
        load_registry(write_csv(frame, tmp_path / "r.csv"), drop_incomplete=True)


def test_row_missing_one_endpoint_serves_the_other(tmp_path):
    frame = chain(
        put("hpfs_months", {1: "", 4: ""}),
        put("hpfs_event", {1: "", 4: ""}),
        put("os_months", {6: ""}),
        put("os_event", {6: ""}),
    )(text_frame())
    registry = load_registry(write_csv(frame, tmp_path / "r.csv"))
    assert len(registry.frame) == 8
    assert registry.report["rows_used"] == {"hpfs": 6, "os": 7}
    assert registry.report["endpoint_missing"] == {"hpfs": 2, "os": 1}
    hpfs = endpoint_frame(registry, "hpfs")
    assert list(hpfs.index) == [0, 2, 3, 5, 6, 7]
    os_ = endpoint_frame(registry, "os")
    assert list(os_.index) == [0, 1, 2, 3, 4, 5, 7]
    assert pd.isna(registry.frame.loc[1, "hpfs_event"]) and np.isnan(registry.frame.loc[1, "hpfs_months"])


def test_one_endpoint_absent_entirely(tmp_path):
    registry = load_registry(write_csv(base_frame().drop(columns=["hpfs_months", "hpfs_event"]), tmp_path / "r.csv"))
    assert registry.report["rows_used"] == {"hpfs": 0, "os": 8}
    assert endpoint_frame(registry, "hpfs").empty


def test_endpoint_frame_shape(tmp_path):
    registry = load_registry(write_csv(base_frame(), tmp_path / "r.csv"))
    out = endpoint_frame(registry, "os")
    assert list(out.columns) == [*cv.REQUIRED, *cv.OPTIONAL, "modality", "time", "event"]
    assert out["time"].dtype == np.float64 and out["event"].dtype == bool
    assert out["event"].tolist() == [bool(e) for e in base_frame()["os_event"]]
    with pytest.raises(ValueError):
        endpoint_frame(registry, "pfs")


@pytest.mark.parametrize("present", [(), ("tumor_type",), ("octreotide", "extrahepatic_metastases"), cv.OPTIONAL])
def test_optional_columns_detected(tmp_path, present):
    absent = [name for name in cv.OPTIONAL if name not in present]
    registry = load_registry(write_csv(base_frame().drop(columns=absent), tmp_path / "r.csv"))
    assert registry.optional == tuple(name for name in cv.OPTIONAL if name in present)
    assert list(endpoint_frame(registry, "hpfs").columns) == [
        *cv.REQUIRED,
        *registry.optional,
        "modality",
        "time",
        "event",
    ]


def test_empty_optional_column_counts_as_absent(tmp_path):
    frame = text_frame()
    frame["biologic"] = ""
    registry = load_registry(write_csv(frame, tmp_path / "r.csv"))
    assert "biologic" not in registry.optional and "biologic" not in registry.frame.columns
    assert registry.report["empty_optional_columns"] == ["biologic"]


def test_blank_rows_are_counted_not_hidden(tmp_path):
    path = tmp_path / "r.csv"
    lines = text_frame().to_csv(index=False).splitlines()
    lines.insert(3, ",,,,")
    lines.append("")
    path.write_text("\n".join(lines) + "\n,,\n")
    registry = load_registry(str(path))
    assert registry.report["rows_read"] == 8 and registry.report["blank_rows_skipped"] == 3
    bad = chain(put("who_grade", {5: "G7"}))(text_frame()).to_csv(index=False).splitlines()
    bad.insert(3, ",,,,")  # row numbers stay the spreadsheet's: the G7 row is now row 8
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(RegistryError, match="'G7' in row 8 "):
        load_registry(str(path))


def test_read_table_is_raw(tmp_path):
    frame = text_frame()
    frame["Notes"] = "x"
    raw = read_table(write_csv(frame, tmp_path / "r.csv"))
    assert list(raw.columns) == list(frame.columns)
    assert raw["who_grade"].tolist() == frame["who_grade"].tolist()


def test_no_warnings_escape(tmp_path):
    # pytest turns warnings into errors; loading every format once more under an explicit check documents that.
    import warnings

    frame = base_frame()
    frame.to_parquet(tmp_path / "r.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_registry(write_xlsx(frame, tmp_path / "r.xlsx"))
        load_registry(str(tmp_path / "r.parquet"))
        load_registry(sqlite_url(frame, tmp_path / "r.db"), table="registry")


def test_messages_state_row_numbering(tmp_path):
    frame = put("who_grade", {0: "G4"})(text_frame())
    with pytest.raises(RegistryError) as caught:
        load_registry(write_csv(frame, tmp_path / "r.csv"))
    assert re.search(
        r"column 'who_grade': unknown value 'G4' in row 2 "
        r"\(spreadsheet row numbers; header = row 1; allowed: 1, 2, 3",
        str(caught.value),
    )


# ---------------------------------------------------------------------------------------------------------------
# Multiple imputation: allow_missing_optional keeps rows whose optional covariates are partly missing


def partly_missing_optional() -> pd.DataFrame:
    return chain(put("tumor_type", {1: "", 4: "NA"}), put("octreotide", {2: ""}))(text_frame())


def test_allow_missing_optional_keeps_rows_and_counts(tmp_path):
    source = write_csv(partly_missing_optional(), tmp_path / "r.csv")
    with pytest.raises(RegistryError, match="column 'tumor_type': missing value in rows 3, 6"):
        load_registry(source)  # the default is unchanged
    registry = load_registry(source, allow_missing_optional=True)
    frame = registry.frame
    assert frame["patient_id"].tolist() == IDS
    assert registry.optional == cv.OPTIONAL
    assert frame["tumor_type"].tolist() == [
        None if i in (1, 4) else level for i, level in enumerate(EXPECTED["tumor_type"])
    ]
    assert frame["octreotide"].isna().tolist() == [i == 2 for i in range(8)]
    assert registry.report["missing_optional"] == {
        "tumor_type": 2,
        "extrahepatic_metastases": 0,
        "octreotide": 1,
        "biologic": 0,
        "cytotoxic": 0,
    }
    assert registry.report["excluded"] == []
    hpfs = endpoint_frame(registry, "hpfs")
    assert hpfs["tumor_type"].isna().sum() == 2 and list(hpfs.columns[:-2]) == [*cv.REQUIRED, *cv.OPTIONAL, "modality"]
    dropped = load_registry(source, drop_incomplete=True)  # without it, such rows are excluded as before
    assert len(dropped.frame) == 5 and dropped.report["missing_optional"] == dict.fromkeys(cv.OPTIONAL, 0)


def test_allow_missing_optional_keeps_the_other_rules(tmp_path):
    frame = put("who_grade", {3: ""})(partly_missing_optional())
    frame["biologic"] = ""  # recorded for no row: absent, as without the mode
    source = write_csv(frame, tmp_path / "r.csv")
    with pytest.raises(RegistryError) as caught:
        load_registry(source, allow_missing_optional=True)
    hint = "fill them in or use drop_incomplete (--drop-incomplete) to exclude such rows"
    assert caught.value.problems == [
        f"column 'who_grade': missing value in row 5 (spreadsheet row numbers; header = row 1); {hint}"
    ]
    registry = load_registry(source, allow_missing_optional=True, drop_incomplete=True)
    assert registry.frame["patient_id"].tolist() == [pid for i, pid in enumerate(IDS) if i != 3]
    assert registry.report["excluded"] == [{"reason": "missing who_grade", "rows": 1}]
    assert registry.optional == ("tumor_type", "extrahepatic_metastases", "octreotide", "cytotoxic")
    assert registry.report["empty_optional_columns"] == ["biologic"]
    assert registry.report["missing_optional"]["tumor_type"] == 2
    unknown = put("tumor_type", {5: "liver"})(partly_missing_optional())
    with pytest.raises(RegistryError, match="column 'tumor_type': unknown value 'liver' in row 7 "):
        load_registry(write_csv(unknown, tmp_path / "u.csv"), allow_missing_optional=True)


def test_missing_optional_counts_are_reported_by_default(tmp_path):
    registry = load_registry(write_csv(base_frame().drop(columns=["biologic"]), tmp_path / "r.csv"))
    assert registry.report["missing_optional"] == {name: 0 for name in cv.OPTIONAL if name != "biologic"}


# ---------------------------------------------------------------------------------------------------------------
# The pieces a batch of patients to score reuses: reading, column mapping, covariates row by row


def test_covariates_row_by_row_for_a_file_of_patients(tmp_path):
    from registry.mapping import load_mapping, resolve_columns
    from registry.patients import parse_covariates
    from registry.reading import read_source

    frame = text_frame()[["patient_id", "who_grade", "tumor_burden", "prior_resection_ablation", "tumor_type"]]
    frame = chain(put("who_grade", {1: "G4", 3: ""}), put("tumor_type", {2: "=A1", 5: ""}))(frame)
    frame = frame.rename(columns={"who_grade": "Grade"})
    raw = read_source(write_csv(frame, tmp_path / "patients.csv"))
    columns = resolve_columns(raw, load_mapping({"Grade": "who_grade"}))
    rows = parse_covariates(raw, columns, (*cv.REQUIRED, *cv.OPTIONAL, "modality"))
    assert list(rows.values) == ["who_grade", "tumor_burden", "prior_resection_ablation", "tumor_type"]
    assert rows.values["who_grade"].tolist() == ["1", None, "3", None, "2", "3", "1", "2"]
    assert rows.values["tumor_type"].tolist()[:3] == ["pancreatic", "gut", None]
    assert rows.missing["who_grade"].tolist() == [i == 3 for i in range(8)]
    assert rows.missing["tumor_type"].tolist() == [i == 5 for i in range(8)]
    assert rows.row_problems() == {
        1: ["who_grade: unknown value 'G4'"],
        2: ["tumor_type: a spreadsheet formula (or text starting with =, +, - or @) where a value belongs"],
    }


def test_distinct_cells_keep_their_types():
    from registry.cells import Cells, distinct, parse_category

    column = distinct(pd.Series([True, 1, 1.0, "1", -0.0, 0.0, None, np.nan, " 1 "], dtype=object))
    assert len(set(column.codes[:6].tolist())) == 6  # True, 1, 1.0, '1', -0.0, 0.0: each its own value
    parsed = parse_category(Cells(column), cv.BY_NAME["octreotide"])
    assert parsed.values.tolist() == ["1", "1", "1", "1", "0", "0", None, None, "1"]
    assert parsed.missing.tolist() == [False] * 6 + [True, True, False]
    floats = distinct(np.array([-0.0, 0.0, 2.5, -0.0]))
    assert floats.codes.tolist() == [0, 1, 2, 0]


# ---------------------------------------------------------------------------------------------------------------
# CSV: the fast reader (pandas' C tokenizer) reads what the csv module reads, or declines


def read_both(data: bytes, delimiter: str = ","):
    from registry.reading import _read_csv_fast, _read_csv_records

    fast = _read_csv_fast(data, delimiter, "r.csv", "sha")
    try:
        slow = _read_csv_records(data, delimiter, "r.csv", "sha")
    except RegistryError as exc:
        slow = exc
    return fast, slow


def assert_same_table(fast, slow) -> None:
    assert not isinstance(slow, RegistryError), slow
    assert fast.header == slow.header
    assert fast.row_numbers.tolist() == slow.row_numbers.tolist()
    assert (fast.blank_rows, fast.row_note, fast.text_formulas) == (slow.blank_rows, slow.row_note, slow.text_formulas)
    pd.testing.assert_frame_equal(fast.to_frame(), slow.to_frame())


def test_fast_csv_reader_reads_a_registry():
    data = base_frame().to_csv(index=False).encode()
    fast, slow = read_both(data)
    assert fast is not None
    assert_same_table(fast, slow)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('a,b\n"x\ny",1\n', "a quoted value spans lines"),
        ("\na,b\n1,2\n", "the first record is blank"),
        ("a,b\n1,2,3\n", "a record is wider than the header"),
        ("a,b\n" + "x" * (200_000) + ",1\n", "a line is longer than the csv module's field limit"),
        ('a,b\n"1,2\n', "an unclosed quote"),
    ],
)
def test_fast_csv_reader_declines(text, why):
    fast, _ = read_both(text.encode())
    assert fast is None, why


CSV_PIECES = [
    "a",
    "1",
    "G2",
    " ",
    "",
    '"',
    '""',
    ",",
    ",",
    ";",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "=x",
    "é",
    "\ufeff",
    "\x0b",
    "\u2028",
    "#",
    "\\",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(CSV_PIECES), max_size=40).map("".join), st.sampled_from([",", ";", "\t"]))
def test_fast_csv_reader_matches_the_csv_module(text, delimiter):
    fast, slow = read_both(text.encode(), delimiter)
    if fast is not None:
        assert_same_table(fast, slow)

"""section_text(): the MIT-LCP parser's behaviour (quirks included) and the corrected mode's fixes."""

from __future__ import annotations

import pytest

from imitate.sections.names import KNOWN_HEADERS, REFERENCE_NAMES, normalize_name
from imitate.sections.parser import last_by_name, section_text

TITLE = " " * 33 + "FINAL REPORT"


def mimic(*lines: str) -> str:
    """A report in MIMIC-CXR formatting: title line, one leading space per line, blank lines as " "."""
    return "\n".join([TITLE, *(" " + line for line in lines)]) + "\n"


STANDARD = mimic(
    "EXAMINATION:  CHEST (PA AND LAT)",
    "",
    "INDICATION:  ___F with new onset ascites  // eval for infection",
    "",
    "TECHNIQUE:  Chest PA and lateral",
    "",
    "COMPARISON:  None.",
    "",
    "FINDINGS: ",
    "",
    "There is no focal consolidation, pleural effusion or pneumothorax.  The",
    "cardiomediastinal silhouette is normal.",
    "",
    "IMPRESSION: ",
    "",
    "No acute cardiopulmonary process.",
)


def sections_by_name(text: str, mode: str = "reference") -> dict[str, str]:
    sections, names, _ = section_text(text, mode)
    return last_by_name(sections, names)


@pytest.mark.parametrize("mode", ["reference", "corrected"])
def test_standard_report(mode: str) -> None:
    sections, names, starts = section_text(STANDARD, mode)
    assert names == ["preamble", "examination", "indication", "technique", "comparison", "findings", "impression"]
    assert sections[0].strip() == "FINAL REPORT"
    assert last_by_name(sections, names).get("findings") == (
        "There is no focal consolidation, pleural effusion or pneumothorax.  The\n"
        " cardiomediastinal silhouette is normal."
    )
    assert last_by_name(sections, names).get("impression") == "No acute cardiopulmonary process."
    assert last_by_name(sections, names).get("comparison") == "None."
    for section, start in zip(sections, starts, strict=True):
        assert STANDARD[start : start + len(section)] == section


def test_reference_section_boundaries_are_exact() -> None:
    sections, _, starts = section_text(STANDARD)
    # the section text starts after the colon and ONE whitespace, and stops at the newline of the next header
    assert sections[1] == " CHEST (PA AND LAT)\n "
    assert sections[-1] == "\n \n No acute cardiopulmonary process.\n"
    assert sections[0] == TITLE + "\n "
    assert starts[1] == len(TITLE) + len("\n EXAMINATION: ")


def test_no_header_is_full_report() -> None:
    assert section_text("No acute process.") == (["No acute process."], ["full report"], [0])


def test_lowercase_header_is_prose_in_reference_and_header_in_corrected() -> None:
    text = mimic("FINDINGS: ", "", "Lungs are clear.", "", "Impression: No effusion.")
    ref = sections_by_name(text)
    assert "impression" not in ref
    assert ref["findings"].endswith("Impression: No effusion.")
    fixed = sections_by_name(text, "corrected")
    assert fixed["impression"] == "No effusion."
    assert fixed["findings"] == "Lungs are clear."


def test_corrected_keeps_unknown_mixed_case_lines_as_prose() -> None:
    text = mimic("FINDINGS: ", "", "Lines and tubes: ET tube 4 cm above the carina.", "", "IMPRESSION: ", "", "Okay.")
    fixed = sections_by_name(text, "corrected")
    assert fixed["findings"] == "Lines and tubes: ET tube 4 cm above the carina."
    assert "lines and tubes" not in fixed


def test_unindented_header_only_in_corrected() -> None:
    text = TITLE + "\nFINDINGS: Lungs are clear.\nIMPRESSION: Normal chest.\n"
    assert section_text(text)[1] == ["full report"]
    fixed = sections_by_name(text, "corrected")
    assert fixed["findings"] == "Lungs are clear."
    assert fixed["impression"] == "Normal chest."


def test_header_on_first_line_only_in_corrected() -> None:
    text = "IMPRESSION: No acute process.\n"
    assert section_text(text)[1] == ["full report"]
    assert sections_by_name(text, "corrected")["impression"] == "No acute process."


def test_tab_indented_header_only_in_corrected() -> None:
    text = mimic("FINDINGS: ", "", "Lungs are clear.") + "\tIMPRESSION:\tNormal.\n"
    ref = sections_by_name(text)
    assert "impression" not in ref and ref["findings"].endswith("\tIMPRESSION:\tNormal.")
    assert sections_by_name(text, "corrected")["impression"] == "Normal."


def test_header_right_after_empty_header_is_swallowed_in_reference() -> None:
    text = mimic("FINDINGS:", "IMPRESSION: No effusion.")
    sections, names, _ = section_text(text)
    assert names == ["preamble", "findings"]
    assert last_by_name(sections, names).get("findings") == "IMPRESSION: No effusion."
    sections, names, _ = section_text(text, "corrected")
    assert names == ["preamble", "impression"]  # the empty findings is deleted
    assert last_by_name(sections, names).get("impression") == "No effusion."


def test_trailing_space_after_empty_header_avoids_the_swallow() -> None:
    # MIMIC writes "FINDINGS: " with a trailing space, so the colon-whitespace does not eat the newline
    assert section_text(mimic("FINDINGS: ", "IMPRESSION: No effusion."))[1] == ["preamble", "impression"]


def test_ndication_is_impression_in_reference_and_indication_in_corrected() -> None:
    text = mimic("NDICATION: Cough.", "", "FINDINGS: ", "", "Lungs are clear.")
    assert sections_by_name(text)["impression"] == "Cough."
    fixed = sections_by_name(text, "corrected")
    assert fixed["indication"] == "Cough." and "impression" not in fixed


def test_whitespace_only_main_sections_are_deleted() -> None:
    text = mimic("CHEST, PA LATERAL: ", "", "INDICATION:  Cough.", "", "IMPRESSION: ", "", "No pneumonia.")
    _, names, _ = section_text(text)
    # the empty title-like "findings" section goes; the indication stays
    assert names == ["preamble", "indication", "impression"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CLINICAL HISTORY", "history"),
        ("REASON FOR EXAM", "indication"),
        ("CONCLUSION", "impression"),
        ("FINDINGS AND IMPRESSION", "impression"),
        ("FINDINGS/IMPRESSION", "impression"),
        ("CHEST, TWO VIEWS", "findings"),
        ("PA AND LATERAL VIEWS OF THE CHEST", "findings"),
        ("PORTABLE AP", "findings"),
        ("IMPRESSON", "impression"),
        ("FINIDNGS", "findings"),
        ("COMPARISIONS", "comparison"),
        ("HISTORY AND IMPRESSION", "impression"),  # first main-section hit, in map order
        ("RECOMMENDATION(S)", "recommendations"),
        ("WETREAD", "wet read"),
        ("  TYPE OF EXAMINATION ", "examination"),
        ("PROVIDER", "provider"),
    ],
)
def test_name_normalisation(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


def test_the_whole_reference_map_is_there() -> None:
    assert len(REFERENCE_NAMES) == 58
    assert "preamble" not in KNOWN_HEADERS and "clinical history" in KNOWN_HEADERS


@pytest.mark.parametrize("header", ["FINDINGS AND IMPRESSION", "CONCLUSION"])
def test_combined_and_conclusion_headers_are_impressions(header: str) -> None:
    text = mimic("INDICATION:  Fever.", "", f"{header}: ", "", "Clear lungs.  No effusion.")
    assert sections_by_name(text)["impression"] == "Clear lungs.  No effusion."


def test_last_section_of_a_name_wins() -> None:
    text = mimic(
        "IMPRESSION: ",
        "",
        "Preliminary: no change.",
        "",
        "FINDINGS: ",
        "",
        "Clear.",
        "",
        "IMPRESSION: ",
        "",
        "Final: no acute process.",
    )
    sections, names, _ = section_text(text)
    assert names.count("impression") == 2
    assert last_by_name(sections, names).get("impression") == "Final: no acute process."
    assert last_by_name(sections, names).get("history") is None


def test_last_paragraph_reference() -> None:
    text = mimic("INDICATION:  Cough.", "", "COMPARISON:  None.", "", "The lungs are clear.", "", "No effusion.")
    sections, names, starts = section_text(text)
    assert names == ["preamble", "indication", "comparison", "last_paragraph"]
    assert sections[2] == " None."
    # everything after the first blank line, re-joined; its index points at the cut, as in the reference
    assert sections[3] == " The lungs are clear.\n \n No effusion.\n"
    assert starts[3] == starts[2] + len(" None.")
    assert text[starts[3] : starts[3] + 3] == "\n \n"


def test_last_paragraph_corrected_breaks_on_any_blank_line() -> None:
    text = TITLE + "\n COMPARISON:  None.\n\n The lungs are clear.\n"
    assert section_text(text)[1] == ["preamble", "comparison"]  # "\n\n" is no MIMIC blank line
    sections, names, starts = section_text(text, "corrected")
    assert names == ["preamble", "comparison", "last_paragraph"]
    assert last_by_name(sections, names).get("last_paragraph") == "The lungs are clear."
    assert text[starts[-1] :].startswith(" The lungs")


def test_last_paragraph_of_a_report_without_headers() -> None:
    sections, names, _ = section_text("Chest radiograph.\n \n No pneumothorax.\n")
    assert names == ["full report", "last_paragraph"]
    assert last_by_name(sections, names).get("last_paragraph") == "No pneumothorax."


def test_no_last_paragraph_when_a_main_section_exists() -> None:
    assert "last_paragraph" not in section_text(STANDARD)[1]


def test_addendum_above_underscores() -> None:
    text = (
        "\n".join(
            [
                " " * 33 + "FINAL ADDENDUM",
                " ADDENDUM:  The findings were discussed with Dr. ___ at 10:15 am.",
                " ",
                " " + "_" * 78,
                TITLE,
                " EXAMINATION:  CHEST (PORTABLE AP)",
                " ",
                " IMPRESSION: ",
                " ",
                " No pneumothorax.",
            ]
        )
        + "\n"
    )
    sections, names, _ = section_text(text)
    assert names == ["preamble", "addendum", "examination", "impression"]
    addendum = last_by_name(sections, names).get("addendum")
    assert addendum.startswith("The findings were discussed") and addendum.endswith("FINAL REPORT")
    assert last_by_name(sections, names).get("impression") == "No pneumothorax."


def test_wet_read() -> None:
    text = (
        "\n".join(
            [
                " WET READ: ___ ___ ___ 9:14 PM",
                "   Right IJ line tip in the low SVC.  No pneumothorax.",
                " " + "_" * 78,
                TITLE,
                " FINDINGS: ",
                " ",
                " Right internal jugular line ends in the low SVC.",
                " ",
                " IMPRESSION: ",
                " ",
                " No pneumothorax.",
            ]
        )
        + "\n"
    )
    by_name = sections_by_name("\n" + text)
    assert by_name["wet read"].startswith("___ ___ ___ 9:14 PM")
    assert by_name["findings"] == "Right internal jugular line ends in the low SVC."
    # without a newline before it the first header is not one (reference), it is in corrected mode
    assert "wet read" not in sections_by_name(text)
    assert "wet read" in sections_by_name(text, "corrected")


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown sectioning mode"):
        section_text(STANDARD, "fast")

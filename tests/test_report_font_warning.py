"""`doorstep report weekly` says when the PDF prints quotes as boxes (audit of stop 39, finding 11).

With Chinese, Hindi, Thai and Japanese quotes and only DejaVu installed, the PDF drew those quotes as blank boxes
(their text extracts as \\x00) and the command printed only the file's path: the font message was logged at INFO,
which the CLI never shows. The command now prints one warning line on stderr naming the scripts and what to
install, and still succeeds (the HTML report shows them). The machine's own fonts are set aside here, so the
faces are those the Python packages bring (Latin, Greek, Cyrillic) whatever fonts the machine has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from doorstep import reports

from test_report_unicode import POSTS, WEEK, _complaint_store
from test_console_apptest import db, demo_template  # noqa: F401 - fixtures

#: The auditor's quotes (m5.jsonl), one per script no bundled face draws.
FAR_QUOTES = {
    "zh": "我的包裹丢了！已经两个星期了，客服一直不回复",
    "hi": "मेरा पैकेट दो हफ्ते से नहीं आया, बहुत खराब सेवा",
    "th": "พัสดุของฉันหายไป บริการแย่มาก ต้องการเงินคืน",
    "ja": "荷物が二週間届きません。返金してください",
}


@pytest.fixture
def bundled_fonts_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The PDF's faces as on a machine without fonts: the same on every machine the tests run on."""
    monkeypatch.setattr(reports, "_system_font_files", lambda: [])
    reports.pdf_fonts.cache_clear()
    yield
    reports.pdf_fonts.cache_clear()


def _weekly(tmp_path: Path, posts: dict[str, str], *options: str) -> tuple[int, str, str]:
    from commands.cli import cli

    _complaint_store(tmp_path / "shop.db", posts).close()
    config = tmp_path / "doorstep.toml"
    config.write_text('timezone = "Europe/London"\n[[brands]]\nname = "Larkspur"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "shop.db"), "--config", str(config), "report", "weekly",
                                      "--week", WEEK, "--no-redact", "--out", str(tmp_path / "out"), *options])
    return result.exit_code, result.stdout, result.stderr


def test_cli_says_which_scripts_the_pdf_prints_as_boxes_and_what_to_install(
        tmp_path: Path, bundled_fonts_only: None) -> None:
    code, out, err = _weekly(tmp_path, {**FAR_QUOTES, **POSTS})
    assert code == 0, err
    pdf = tmp_path / "out" / f"weekly-{WEEK}.pdf"
    assert out.split() == [str(tmp_path / "out" / f"weekly-{WEEK}.html"), str(pdf)]
    lines = [line for line in err.splitlines() if "no font" in line]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"warning: {pdf}: no font on this machine for ")
    for script in ("Chinese", "Japanese", "Hindi", "Thai"):
        assert script in line, line
    for package in ("fonts-droid-fallback", "fonts-lohit-deva", "fonts-tlwg-garuda-ttf"):
        assert package in line, line
    assert "Latin" not in line and "Korean" not in line, line  # Polish and Welsh are drawn; no Korean quote
    assert "README" in line


def test_cli_says_nothing_of_fonts_when_every_quote_is_drawn(tmp_path: Path, bundled_fonts_only: None) -> None:
    code, _, err = _weekly(tmp_path, POSTS)
    assert code == 0, err
    assert "no font" not in err, err


def test_cli_says_nothing_of_fonts_for_the_html_report_alone(tmp_path: Path, bundled_fonts_only: None) -> None:
    code, _, err = _weekly(tmp_path, FAR_QUOTES, "--format", "html")
    assert code == 0, err
    assert "no font" not in err, err


def test_a_script_without_a_named_package_is_still_named(bundled_fonts_only: None) -> None:
    """Arabic and Ethiopic (Amharic): no bundled face draws them; the warning names them and asks for a font."""
    gaps = reports.pdf_font_gaps("<p>طلبي لم يصل بعد — ጥቅሌ አልደረሰም — Łódź</p>")
    assert gaps == ["Arabic", "Ethiopic"]
    line = reports.pdf_font_warning(Path("weekly.pdf"), gaps)
    assert line.startswith("weekly.pdf: no font on this machine for Arabic, Ethiopic: ")
    assert "TrueType font" in line


def test_the_console_says_it_beside_the_download(monkeypatch: pytest.MonkeyPatch, db) -> None:  # noqa: ANN001
    """The Reports page rendered the PDF without asking: a lead downloaded boxes and was told nothing."""
    from test_console_apptest import page

    real = reports.render_pdf

    def boxes_for_thai(report, path, *, notes=None):  # noqa: ANN001, ANN202 - as on a machine with no Thai font
        made = real(report, path, notes=notes)
        notes.append(reports.pdf_font_warning(path, ["Thai"]))
        return made

    monkeypatch.setattr(reports, "render_pdf", boxes_for_thai)
    at = page("reports", "ann", db)
    at.button(key="report_render").click().run()
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "no font on this machine for Thai: those quotes print as boxes" in warnings, warnings
    assert "report.pdf" not in warnings  # the server's temporary path is no business of the lead's

"""dashboard.text: file text made safe for Markdown and Plotly (issue 15, finding 9).

What Streamlit 1.67 renders was checked in Chromium (tests/test_security_content.py); these
tests pin the helper's output.
"""

from __future__ import annotations

import re

import pytest

from dashboard.text import file_part, md_escape, plotly_escape

ZWSP = "\u200b"


class TestMdEscape:
    @pytest.mark.parametrize("raw", ["![x](http://h/b.png)", "[a](b)", "**b**", ":red[x]", ":material/face:",
                                     "$x^2$", "<img src=x>", "`code`", "~~s~~", "a | b", "_i_", "&lt;", "\\*"])
    def test_inline_markdown_characters_are_escaped(self, raw):
        out = md_escape(raw)
        assert not re.search(r"(?<!\\)[`*_{}\[\]()!|~<>$:&]", out.replace("\\\\", "")), out
        assert out.replace("\\", "").replace(ZWSP, "") == raw.replace("\\", "")

    @pytest.mark.parametrize("raw, out", [("# title", "\\# title"), ("- item", "\\- item"), ("+ x", "\\+ x"),
                                         ("1. item", "1\\. item"), ("12) x", "12\\) x"), ("  # x", "\\# x"),
                                         ("a - b. 1. c # d", "a - b. 1. c # d"), ("20.0° removed", "20.0° removed"),
                                         ("---", "\\---"), ("## x", "\\## x"), ("-1.5 mm", "-1.5 mm"),
                                         ("#1 T1", "#1 T1")])
    def test_block_markers_escaped_only_where_a_block_starts(self, raw, out):
        assert md_escape(raw) == out

    @pytest.mark.parametrize("raw, broken", [("http://a.b/c", "http:" + ZWSP + "//"),
                                            ("HTTPS://a.b", "HTTPS:" + ZWSP + "//"),
                                            ("see www.a.com", "www" + ZWSP),
                                            ("WWW.A.COM", "WWW" + ZWSP),
                                            ("me@host.org", "@" + ZWSP),
                                            ("mailto:me@host.org", "@" + ZWSP)])
    def test_autolinks_are_broken(self, raw, broken):
        out = md_escape(raw)
        assert broken in out.replace("\\", "")

    def test_lines_and_control_characters_become_spaces(self):
        assert md_escape("a\nb\r\n\tc\x00d\u2028e") == "a b c d e"

    def test_long_text_is_cut(self):
        assert md_escape("x" * 500) == "x" * 200 + "…"
        assert md_escape("x" * 500, max_len=None) == "x" * 500

    def test_plain_words_are_unchanged(self):
        for text in ("Bone 400 HU", "SECRET^PATIENT", "1.5 mm, -300 HU", "a/b = c; 50 %"):
            assert md_escape(text) == text


class TestPlotlyEscape:
    def test_markup_and_templates_are_text(self):
        out = plotly_escape("<a href='http://x'>%{y}</a> & <b>")
        assert "<" not in out and ">" not in out and "%{" not in out
        assert out.startswith("&lt;a href='http:")

    def test_plain_unit(self):
        assert plotly_escape("HU") == "HU"


def test_file_part():
    assert file_part("MR") == "MR"
    assert file_part("../../etc/passwd") == "etcpasswd"
    assert file_part("") == file_part("///") == "series"
    assert len(file_part("A" * 100)) == 16


class TestNumbers:
    """One way to write numbers and units (core.numbers, docs/CONTRIBUTING.md)."""

    @pytest.mark.parametrize(("value", "text"), [(0.9765625, "0.977"), (0.976562, "0.977"), (0.9766, "0.977"),
                                                 (1.0, "1"), (2.5, "2.5"), (-0.0001, "0"), (1234.5, "1234.5"),
                                                 (float("nan"), "—"), (0.625, "0.625"), (3.0, "3")])
    def test_decimal(self, value, text):
        from core.numbers import decimal

        assert decimal(value) == text

    def test_lengths_and_spacing(self):
        from core.numbers import length_mm, spacing_mm

        assert length_mm(0.9765625) == "0.977 mm"
        assert spacing_mm((1.25, 0.9765625, 0.9765625)) == "1.25 x 0.977 x 0.977 mm"

    @pytest.mark.parametrize(("n", "text"), [(1, "1 slice"), (0, "0 slices"), (2, "2 slices"), (2048, "2,048 slices")])
    def test_count(self, n, text):
        from core.numbers import count

        assert count(n, "slice") == text

    @pytest.mark.parametrize(("n", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                             (12, "12th"), (13, "13th"), (21, "21st"), (75, "75th"), (99, "99th")])
    def test_ordinal(self, n, text):
        from core.numbers import ordinal

        assert ordinal(n) == text


class TestValueKind:
    @pytest.mark.parametrize(("dtype", "words"), [
        ("int16", "16-bit whole numbers"), ("uint8", "8-bit whole numbers (no sign)"), ("float32", "32-bit decimals"),
    ])
    def test_dtypes_in_words(self, dtype, words):
        from dashboard.text import value_kind

        assert value_kind(dtype) == words


class TestUnitLabel:
    def test_a_unit_from_a_file_is_cut(self):
        from dashboard.text import unit_label

        assert unit_label("HU") == "HU" and unit_label("") == "stored units"
        assert unit_label("x" * 64) == "x" * 15 + "…"

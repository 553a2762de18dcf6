"""The report's captions (workflow/report/*.rst) render as reStructuredText without a single
docutils message: an error there shows as a red block in ``snakemake --report``."""

import io

import docutils.core
import pytest

from . import smk

CAPTIONS = sorted((smk.REPO / "workflow" / "report").glob("*.rst"))


def test_there_are_captions():
    assert len(CAPTIONS) >= 8, CAPTIONS


@pytest.mark.parametrize("path", CAPTIONS, ids=lambda p: p.name)
def test_caption_renders_cleanly(path):
    messages = io.StringIO()
    docutils.core.publish_parts(
        path.read_text(),
        source_path=str(path),
        writer="html",
        settings_overrides={"warning_stream": messages, "report_level": 1, "halt_level": 5},
    )
    assert messages.getvalue() == "", messages.getvalue()

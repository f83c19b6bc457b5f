"""The composition table: one composer per kind, and a template set for each."""

import re
from pathlib import Path

from nudger.mail.compose import COMPOSERS
from nudger.mail.render import KINDS, TEMPLATES_DIR

# "test" sends a journey's sample email of another kind, so it has no templates.
NO_TEMPLATE = {"test"}


def template_kinds() -> set[str]:
    return {p.name.removesuffix(".subject.txt") for p in TEMPLATES_DIR.glob("*.subject.txt")}


def test_every_kind_with_templates_has_a_composer_and_every_composer_has_templates():
    assert template_kinds() == set(COMPOSERS) - NO_TEMPLATE


def test_each_kind_has_subject_text_and_html_templates():
    for kind in template_kinds():
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (TEMPLATES_DIR / f"{kind}{suffix}").is_file(), f"{kind}{suffix}"


def test_the_kinds_a_learner_or_manager_receives_are_composed():
    assert set(KINDS) <= set(COMPOSERS)


def test_no_module_registers_a_composer_by_being_imported():
    # The table is a literal: composers are looked up there, never added to it.
    root = Path(__file__).resolve().parents[2] / "nudger"
    adding = re.compile(r"COMPOSERS\[[^\]]+\]\s*=(?!=)|COMPOSERS\.(update|setdefault)")
    for path in root.rglob("*.py"):
        assert not adding.search(path.read_text()), path

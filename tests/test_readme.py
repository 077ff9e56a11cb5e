"""README claims that must stay true."""
from pathlib import Path

from jpegfx.registry import support_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_supported_operations_table_is_generated_from_the_registry():
    assert support_table() in README.read_text()


def test_quick_start_has_the_two_make_targets():
    text = README.read_text()
    assert "make demo" in text and "make test" in text

"""Case files: YAML (safe loader, line numbers) -> pydantic model -> compiled `Case`."""

from .case import Case
from .load import MAX_ELEMENTS, discover, load_cases, load_file, load_text
from .models import CaseModel

__all__ = ["Case", "CaseModel", "load_cases", "load_file", "load_text", "discover", "MAX_ELEMENTS"]

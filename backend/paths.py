"""Where the project's files live: the source tree, the compiled artifacts and the default data folder."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = PROJECT_ROOT / "build" / "contracts"
DEFAULT_DATA_DIR = Path(".data")

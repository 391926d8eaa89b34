"""Write mappings/ from the field declaration (forwarder/ecs/fields.py) through forwarder.mappings.

    python3 tools/gen_mappings.py [OUTPUT_DIR]

OUTPUT_DIR defaults to mappings/ at the repository root (the tests write elsewhere and compare).
Each object goes to ``OUTPUT_DIR/<engine>/<API path>.json``: ``PUT <API path>`` with the file as
body installs it, in the order of ``OUTPUT_DIR/<engine>/ORDER`` (policies first, then component
templates, then the index template).  Files of objects that are no longer generated are removed.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from forwarder.mappings import ENGINES, engine_objects, render  # noqa: E402

#: Name of the file that lists the API paths in installation order.
ORDER_FILE = "ORDER"


def expected_files() -> dict[str, str]:
    """Relative file path -> text of every file the generator writes."""
    files: dict[str, str] = {}
    for engine in ENGINES:
        objects = engine_objects(engine)
        for path, body in objects.items():
            files[f"{engine}/{path}.json"] = render(body)
        files[f"{engine}/{ORDER_FILE}"] = "".join(f"{path}\n" for path in objects)
    return files


def write(out: pathlib.Path) -> list[str]:
    """Write the files under ``out``; return the relative paths written or removed."""
    files = expected_files()
    changed: list[str] = []
    for engine in ENGINES:
        engine_dir = out / engine
        if engine_dir.is_dir():
            for stale in sorted(engine_dir.rglob("*.json")):
                relative = stale.relative_to(out).as_posix()
                if relative not in files:
                    stale.unlink()
                    changed.append(f"removed {relative}")
    for relative, text in files.items():
        target = out / relative
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(f"wrote {relative}")
    return changed


def main(argv: list[str]) -> int:
    out = pathlib.Path(argv[1]) if len(argv) > 1 else ROOT / "mappings"
    for line in write(out):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The fixture folder is complete: every file the manifest lists exists with the size it states."""

from pathlib import Path


def test_manifest_files_present(reference_dir: Path, manifest: dict, measured) -> None:
    sizes = manifest["file_sizes_bytes"]
    for name, size in sizes.items():
        path = reference_dir / name
        assert path.is_file(), f"{path}: listed in manifest.json but missing"
        assert path.stat().st_size == size, f"{path}: {path.stat().st_size} bytes, manifest says {size}"
    measured("fixture_files", len(sizes))

"""Output folders that are never overwritten by accident: ``evdet-data synth``, ``evdet-detect``,
``evdet-model predict``; and single output files (:func:`write_file_atomically`: ``evdet-model import-rvt`` and
``export``).

Rules (one per tool run, the folder ``OUT``):

* ``OUT`` missing or empty: the run writes into it.
* ``OUT`` not empty: refused with :class:`OutputFolderError` (``OUT: output folder is not empty (...); pass
  --overwrite ...``) before anything is loaded or written, unless ``overwrite`` is set.
* ``overwrite``: allowed only when every file in ``OUT`` was written by an earlier run of the *same* tool, as
  recorded in its manifest ``OUT/.evdet-manifest.json``; those files are removed and replaced by the new ones, so
  no stale file of the earlier run survives (e.g. PNGs of windows the new run does not draw). A file the tool did
  not write (the user's own files, another tool's outputs, outputs of an evdet version without manifests) is never
  deleted: the run is refused naming it.

Atomicity: a run writes into a staging folder ``OUT/.evdet-staging-<pid>-<random>/`` (same file system) and moves
its files into ``OUT`` only when it finished; an error or Ctrl-C removes the staging folder and leaves ``OUT`` as it
was (a folder the run created is removed again). The manifest always lists every file of the tool present in ``OUT``
(it is written with the union of old and new files before any file is moved, and with the new files at the end),
so a run killed while moving is still recognised by the next ``--overwrite``. Staging folders left by a killed run
(its process gone) count as empty and are removed. One run per folder at a time.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from collections.abc import Callable
from types import TracebackType

__all__ = ["MANIFEST_NAME", "STAGING_PREFIX", "OutputFolder", "OutputFolderError", "check_output_folder",
           "write_file_atomically"]

#: The manifest of the tool run that wrote a folder: ``{"tool", "written_utc", "files": [relative paths]}``.
MANIFEST_NAME = ".evdet-manifest.json"
#: Name prefix of the staging folder of a running (or killed) run, ``.evdet-staging-<pid>-<random>``.
STAGING_PREFIX = ".evdet-staging-"


class OutputFolderError(ValueError):
    """An output folder cannot be used as asked; the message names the folder and says what to do."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dead_staging(entry: Path) -> bool:
    """True for a staging folder of this process or of one that no longer runs (left by a killed run), and for a
    manifest's temporary file left by a killed run."""
    if entry.name.startswith(MANIFEST_NAME + ".tmp-"):
        return True
    if not (entry.name.startswith(STAGING_PREFIX) and entry.is_dir()):
        return False
    try:
        pid = int(entry.name[len(STAGING_PREFIX):].split("-")[0])
    except ValueError:
        return False
    return pid == os.getpid() or not _pid_alive(pid)


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        return None
    return manifest


def _files_below(folder: Path) -> list[str]:
    """Relative POSIX paths of the files below ``folder`` (no manifest, no staging folders)."""
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if rel.parts[0].startswith((STAGING_PREFIX, MANIFEST_NAME)):
            continue
        if path.is_file() or path.is_symlink():
            found.append(rel.as_posix())
    return found


def _describe(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_output_folder(folder: str | os.PathLike[str], tool: str, overwrite: bool = False) -> list[str]:
    """Check that ``tool`` may write into ``folder`` (module docstring); touches nothing.

    Args:
        folder: the output folder (may be missing).
        tool: the console tool, e.g. ``"evdet-detect"`` (recorded in and compared with the manifest).
        overwrite: replace the outputs of an earlier run of ``tool`` (``--overwrite``).

    Returns:
        The files (relative paths) a commit would remove: those of the earlier run when ``overwrite`` is set, else
        an empty list.

    Raises:
        OutputFolderError: ``folder`` is a file; it is not empty and ``overwrite`` is not set; or ``overwrite`` is
            set but it holds files no earlier run of ``tool`` wrote (names up to five of them).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: output folder is a file; expected a folder (missing or empty)")
    if not folder.is_dir():
        return []
    entries = [e for e in sorted(folder.iterdir()) if not _is_dead_staging(e)]
    if not entries:
        return []
    names = [e.name + ("/" if e.is_dir() else "") for e in entries]
    if not overwrite:
        raise OutputFolderError(f"{folder}: output folder is not empty ({len(names)} entries: {_describe(names)}); "
                                f"choose an empty folder, or pass --overwrite to replace the outputs of an earlier "
                                f"{tool} run there")
    manifest = _read_manifest(folder)
    previous = set(manifest["files"]) if manifest and manifest.get("tool") == tool else set()
    foreign = [f for f in _files_below(folder) if f not in previous]
    if foreign:
        origin = (f"its manifest {MANIFEST_NAME} is from {manifest.get('tool')}" if manifest and not previous
                  else "not listed in its manifest " + MANIFEST_NAME if manifest else f"it has no {MANIFEST_NAME}")
        raise OutputFolderError(f"{folder}: --overwrite replaces only the files an earlier {tool} run wrote, but "
                                f"{len(foreign)} files were not written by it ({_describe(foreign)}; {origin}); "
                                "move them away or choose another output folder")
    return sorted(previous)


class OutputFolder:
    """Write the outputs of one tool run into a staging folder and move them into ``folder`` when finished.

    Usage::

        with OutputFolder(out, "evdet-detect", overwrite=args.overwrite) as output:
            write files below output.staging ...
        # here the files are in ``out`` and listed in out/.evdet-manifest.json

    Leaving the block with an exception (or Ctrl-C) removes the staging folder and leaves ``folder`` unchanged.

    Args:
        folder: the output folder (created with its parents when missing).
        tool: the console tool name recorded in the manifest.
        overwrite: replace the outputs of an earlier run of ``tool`` (see :func:`check_output_folder`).

    Attributes:
        folder: the final folder; staging: the folder to write into (exists inside the ``with`` block);
        files: after the block, the relative paths of the files written (sorted).

    Raises:
        OutputFolderError: from ``__enter__`` (nothing created) as :func:`check_output_folder`.
        OSError: the folder cannot be created or written.
    """

    def __init__(self, folder: str | os.PathLike[str], tool: str, overwrite: bool = False) -> None:
        self.folder = Path(folder)
        self.tool = tool
        self.overwrite = bool(overwrite)
        self.staging = self.folder / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.files: list[str] = []
        self._created: Path | None = None

    def final(self, path: str | os.PathLike[str]) -> Path:
        """The final path of a file written at ``path`` below :attr:`staging` (other paths are returned as is)."""
        path = Path(path)
        try:
            return self.folder / path.relative_to(self.staging)
        except ValueError:
            return path

    def __enter__(self) -> "OutputFolder":
        check_output_folder(self.folder, self.tool, self.overwrite)
        missing = self.folder
        while not missing.parent.exists() and missing.parent != missing:
            missing = missing.parent
        self._created = missing if not missing.exists() else None
        self.staging.mkdir(parents=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self._commit()
                return
            except BaseException:
                self._discard()
                raise
        self._discard()

    def _discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._created is not None:
            # remove only the (empty) folders this run created
            path = self.folder
            while True:
                try:
                    path.rmdir()
                except OSError:
                    break
                if path == self._created:
                    break
                path = path.parent

    def _write_manifest(self, files: list[str]) -> None:
        text = json.dumps({"tool": self.tool, "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "files": sorted(files)}, indent=1) + "\n"
        tmp = self.folder / f"{MANIFEST_NAME}.tmp-{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, self.folder / MANIFEST_NAME)

    def _commit(self) -> None:
        previous = check_output_folder(self.folder, self.tool, self.overwrite)  # again: nothing appeared meanwhile
        new = sorted(p.relative_to(self.staging).as_posix() for p in self.staging.rglob("*") if p.is_file())
        if previous or new:
            self._write_manifest(sorted(set(previous) | set(new)))
        for rel in previous:
            if rel not in new:
                (self.folder / rel).unlink(missing_ok=True)
        emptied = {parent for r in previous if r not in new for parent in Path(r).parents if parent != Path(".")}
        for sub in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
            try:
                (self.folder / sub).rmdir()  # folders emptied by removing the earlier run's files
            except OSError:
                pass
        for rel in new:
            target = self.folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.staging / rel, target)
        for sub in sorted(p.relative_to(self.staging) for p in self.staging.rglob("*") if p.is_dir()):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)  # empty folders of the run, e.g. a split of 0
        self._write_manifest(new)
        shutil.rmtree(self.staging, ignore_errors=True)
        for entry in self.folder.iterdir():
            if _is_dead_staging(entry):  # leftovers of killed runs
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self.files = new


def write_file_atomically(write: Callable[[Path], None], output: str | os.PathLike[str], *, overwrite: bool,
                          label: str = "") -> None:
    """Write one output file whole or not at all: ``write(tmp)`` fills a fresh temporary file next to ``output``
    (same file system), which then becomes ``output``; a file at ``output`` is replaced only with ``overwrite``.

    Without ``overwrite`` the temporary file is hard-linked to ``output``, which fails if ``output`` exists, also when
    it appeared while ``write`` ran (on file systems without hard links: checked, then renamed). The temporary file
    is removed in every case, so an error or Ctrl-C never leaves a partial ``output``.

    Args:
        write: called with the temporary path; writes the whole file there.
        output: the file to create.
        overwrite: replace an existing ``output``.
        label: prefix of ``output`` in the error message (e.g. ``"--output "`` for a flag).

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False (``<label><output> exists; pass --overwrite to
            replace it``); it is left untouched.
        OSError: the folder cannot be created or written (raised by ``write`` or the rename).
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name in the output folder, created with the usual permissions (umask), unlike mkstemp's 0600.
    tmp = output.parent / f".{output.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    exists = f"{label}{output} exists; pass --overwrite to replace it"
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, output)
            return
        try:
            os.link(tmp, output)
        except FileExistsError:
            raise FileExistsError(exists) from None
        except OSError:  # file systems without hard links
            if output.exists():
                raise FileExistsError(exists) from None
            os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)

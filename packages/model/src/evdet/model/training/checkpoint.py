"""Reading and checking the Lightning checkpoints of ``evdet-train``, loading a trained detector from one, and finding
the checkpoint a run resumes from.

Safe loading: every checkpoint is read with ``torch.load(..., weights_only=True)`` (:func:`read_checkpoint`), which
builds only tensors, plain containers (dict, list, tuple, set), strings, numbers, booleans and None. ``evdet-train``
stores the run's config as such plain data (:class:`evdet.model.training.module.DetectionModule`), so its checkpoints, and
those of ``evdet-model import-rvt``, hold nothing else. A file whose pickle names any other global (a class or a
function that unpickling would call: the way a planted file runs code in every pod that loads it) is refused
before any of it runs, with one :class:`CheckpointError` naming the file and the offending global(s). This holds for
``evdet-model predict``, ``evdet-detect``, ``ckpt_path`` and ``resume=auto`` of ``evdet-train`` alike, local files
and ``s3://`` objects alike.

Checkpoint paths may be local files or ``s3://bucket/key`` URIs (downloaded once into the cache,
:func:`evdet.data.storage.fetch_file`); a URI that went through ``pathlib.Path`` (``s3:/bucket/key``, as the
``--checkpoint`` options of ``evdet-model predict`` / ``evdet-detect`` deliver it) is accepted too.
"""

from __future__ import annotations

import io
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from evdet.data.storage import Store, fetch_file, run_prefix
from evdet.model.training.module import DetectionModule

__all__ = [
    "CheckpointError",
    "load_module",
    "local_checkpoint",
    "find_resume_checkpoint",
    "read_checkpoint",
    "checkpoint_config",
    "checkpoint_step",
    "check_state_dict",
    "check_resume_checkpoint",
    "check_resume_metadata",
    "peek_checkpoint",
    "unsafe_globals",
]


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, carrying pickled objects other than tensors and plain containers,
    not written by evdet, or of another model / schedule. ``str(err)`` is one line that names the file."""


def local_checkpoint(path: str | Path) -> Path:
    """A local file for the checkpoint ``path``: local paths unchanged, ``s3://bucket/key`` (or ``s3:/bucket/key``)
    downloaded into the cache (reused when size and etag match).

    Raises:
        FileNotFoundError: no object at the S3 key (message names the URI).
        evdet.data.storage.StoreError: the S3 server is unreachable, refuses the credentials or lacks the bucket.
    """
    return fetch_file(str(path))


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _pickle_globals(data: bytes) -> list[str]:
    """Globals named by a pickle stream (``GLOBAL`` / ``STACK_GLOBAL`` / ``INST``), found by disassembling it with
    :mod:`pickletools` (nothing is executed). ``STACK_GLOBAL`` takes the two strings pushed last."""
    found: list[str] = []
    strings: list[str | None] = []  # the values pushed, as far as they are strings (None: something else)
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(strings) >= 2 and None not in strings[-2:]:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if "UNICODE" in name or name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                strings.append(str(arg))
            elif name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = strings[-1] if strings else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                strings.append(memo.get(int(arg)))
            elif name not in ("FRAME", "PROTO", "MARK"):
                strings.append(None)
    except Exception:  # noqa: BLE001 - a truncated stream: report what was found up to there
        pass
    return found


def unsafe_globals(path: str | Path) -> list[str]:
    """The globals in the checkpoint at ``path`` that ``torch.load(weights_only=True)`` does not allow, e.g.
    ``["posix.system"]``; found statically (the pickle is disassembled, never executed). Empty when there is none or
    the file is no pickle at all.

    Works on the zip format of ``torch.save`` (through ``torch.serialization.get_unsafe_globals_in_checkpoint``) and
    on a bare pickle (legacy format).
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))))
        data = path.read_bytes()
    except Exception:  # noqa: BLE001 - unreadable: the caller reports the load error instead
        return []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _torch_safe_globals()}
    return sorted({name for name in _pickle_globals(data)
                   if name not in allowed and not name.startswith(("torch.", "collections.OrderedDict"))})


def _torch_safe_globals() -> list[Any]:
    getter = getattr(torch.serialization, "get_safe_globals", None)
    try:
        return [g for g in (getter() if getter else []) if hasattr(g, "__module__") and hasattr(g, "__qualname__")]
    except Exception:  # noqa: BLE001
        return []


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (``torch.save``) or a pickle stream (protocol 2+ starts with the PROTO opcode ``0x80``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the Lightning checkpoint at the local ``path`` with ``torch.load(weights_only=True)``.

    Returns:
        The checkpoint dict (``state_dict``: parameter name -> tensor on ``map_location``; ``hyper_parameters``,
        ``global_step``, ``optimizer_states``, ... as Lightning wrote them).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: one line naming the file, and either the pickled global(s) that weights-only loading
            refuses (the file is never unpickled with anything but the weights-only unpickler), or why it is not a
            checkpoint (not a torch file, no ``state_dict``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says what matters
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and weights-only errors come in many types
        refused = unsafe_globals(path)
        if refused:
            raise CheckpointError(
                f"checkpoint {path}: refused: its pickle calls {', '.join(refused[:3])}"
                f"{' ...' if len(refused) > 3 else ''}, which torch.load(weights_only=True) does not allow; evdet "
                "loads only tensors and plain containers, since a file that carries other objects can run code when it "
                "is unpickled (this one was not unpickled); re-create it with evdet-train or evdet-model import-rvt"
            ) from None
        if not _looks_like_torch_file(path):
            raise CheckpointError(f"checkpoint {path}: not a torch checkpoint (neither the zip archive of torch.save "
                                  "nor a pickle); expected a .ckpt written by evdet-train") from None
        reason = _one_line(exc).split(" Check the documentation")[0]
        reason = reason.split("Do it only if you got the file from a trusted source.")[-1].strip() or reason
        raise CheckpointError(f"checkpoint {path}: not a torch checkpoint that torch.load(weights_only=True) can "
                              f"read ({type(exc).__name__}: {reason[:200]})") from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise CheckpointError(f"checkpoint {path}: not a Lightning checkpoint (expected a dict with a state_dict, "
                              f"got {type(obj).__name__}{' without state_dict' if isinstance(obj, Mapping) else ''})")
    return dict(obj)


def checkpoint_config(checkpoint: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """The training config an evdet checkpoint carries (``hyper_parameters["config"]``, a plain dict).

    Raises:
        CheckpointError: no such config (not written by ``evdet-train`` / ``evdet-model import-rvt``); names the file.
    """
    hp = checkpoint.get("hyper_parameters")
    config = hp.get("config") if isinstance(hp, Mapping) else None
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping) \
            or not isinstance(config.get("dataset"), Mapping):
        raise CheckpointError(f"checkpoint {path}: not an evdet checkpoint (no config hyper-parameter with model and "
                              "dataset; expected a file written by evdet-train or evdet-model import-rvt)")
    return dict(config)


def peek_checkpoint(path: str | Path) -> dict[str, Any]:
    """:func:`read_checkpoint` with the tensors memory-mapped when the file allows it (the zip format of
    ``torch.save``), so reading the step and the config of a large checkpoint costs little.

    Raises:
        FileNotFoundError, CheckpointError: as :func:`read_checkpoint`.
    """
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
                return dict(obj)
        except Exception:  # noqa: BLE001 - unsafe or unreadable: the full reader gives the clear error
            pass
    return read_checkpoint(path)


def checkpoint_step(path: str | Path) -> int:
    """``global_step`` of the checkpoint at the local ``path`` (read weights-only, :func:`peek_checkpoint`).

    Raises:
        FileNotFoundError, CheckpointError: as :func:`read_checkpoint`.
    """
    return int(peek_checkpoint(path).get("global_step", 0))


def _differences(old: Any, new: Any, prefix: str, out: list[str], limit: int = 3) -> None:
    """Append ``key: old -> new`` for differing leaves of two config trees (at most ``limit``)."""
    if len(out) >= limit:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _differences(old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}.{key}" if prefix else str(key),
                         out, limit)
    elif old != new:
        out.append(f"{prefix}={old!r} in the checkpoint, {new!r} now")


def check_state_dict(module: torch.nn.Module, state_dict: Mapping[str, Any], path: str | Path,
                     checkpoint_cfg: Mapping[str, Any] | None = None,
                     config: Mapping[str, Any] | None = None) -> None:
    """Check that ``state_dict`` (parameter name -> tensor) fits ``module`` exactly: same names, same shapes.

    Args:
        module: the module the weights are for.
        state_dict: the checkpoint's ``state_dict``.
        path: the checkpoint file (named in the message).
        checkpoint_cfg, config: the checkpoint's and the current training config; when both are given, the message
            names the model config keys that differ (``model.*``, ``dataset.num_classes``, ``dataset.in_channels``).

    Raises:
        CheckpointError: one line naming the file, the first key that is missing, unexpected or of another shape
            (both shapes), and the differing config keys when known.
    """
    expected = module.state_dict()
    problems = []
    for key, tensor in expected.items():
        got = state_dict.get(key)
        if got is None:
            problems.append(f"{key} {tuple(tensor.shape)} is missing")
        elif not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(tensor.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            problems.append(f"{key} is {shape} in the checkpoint, {tuple(tensor.shape)} in the model")
    problems += [f"{key} is not in the model" for key in state_dict if key not in expected]
    if not problems:
        return
    diffs: list[str] = []
    if checkpoint_cfg is not None and config is not None:
        for part in ("model",):
            _differences(checkpoint_cfg.get(part), config.get(part), part, diffs)
        for key in ("num_classes", "in_channels", "class_names", "class_map"):
            _differences((checkpoint_cfg.get("dataset") or {}).get(key), (config.get("dataset") or {}).get(key),
                         f"dataset.{key}", diffs)
    hint = f"; config differs: {'; '.join(diffs)}" if diffs else ""
    raise CheckpointError(f"checkpoint {path}: its weights do not fit the configured model: {problems[0]}"
                          f"{f' (+{len(problems) - 1} more)' if len(problems) > 1 else ''}{hint}")


def check_resume_metadata(checkpoint: Mapping[str, Any], path: str | Path, config: Mapping[str, Any],
                          what: str) -> None:
    """What :func:`check_resume_checkpoint` checks without a model: an evdet training checkpoint (config, optimizer
    and loop state; not weights only) trained for the same ``training.max_steps`` (the one-cycle learning-rate
    schedule spans ``max_steps``, so a continued run keeps the schedule it started with).

    Raises:
        CheckpointError: one line naming the file and the problem, with the two ways forward for ``max_steps``.
    """
    ckpt_cfg = checkpoint_config(checkpoint, path)
    if not checkpoint.get("optimizer_states") or "loops" not in checkpoint:
        raise CheckpointError(f"{what}: checkpoint {path} holds weights only (no optimizer and loop state, e.g. a file "
                              "of evdet-model import-rvt); a run can only continue from a checkpoint written by "
                              "evdet-train")
    old = (ckpt_cfg.get("training") or {}).get("max_steps")
    new = config["training"]["max_steps"]
    if old is not None and int(old) != int(new):
        raise CheckpointError(
            f"{what}: training.max_steps={new} differs from the {old} that checkpoint {path} was trained with (step "
            f"{int(checkpoint.get('global_step', 0))}); the one-cycle learning-rate schedule spans max_steps, so a run "
            f"continues only with its own: pass training.max_steps={old}, or start a new run with another run_id")


def check_resume_checkpoint(checkpoint: Mapping[str, Any], path: str | Path, module: torch.nn.Module,
                            config: Mapping[str, Any], what: str) -> None:
    """Check that training can continue from ``checkpoint`` with ``config``: :func:`check_resume_metadata`, and
    weights that fit ``module`` (:func:`check_state_dict`).

    Args:
        checkpoint: the loaded checkpoint (:func:`read_checkpoint`).
        path: its local file (named in messages).
        module: the freshly built module of ``config``.
        config: the current training config (plain dict).
        what: how the checkpoint was chosen, for messages (e.g. ``resume=auto (run r1)`` or ``ckpt_path=...``).

    Raises:
        CheckpointError: one line naming the file and the problem.
    """
    check_resume_metadata(checkpoint, path, config, what)
    check_state_dict(module, checkpoint["state_dict"], path, checkpoint_config(checkpoint, path), config)


def find_resume_checkpoint(store: Store, experiment: str, run_id: str | None) -> tuple[str | None, str | None]:
    """The checkpoint ``resume=auto`` continues from.

    Args:
        store: the run's store (``output.store``).
        experiment: experiment name.
        run_id: the run to resume; ``None`` picks the run of ``experiment`` whose ``last.ckpt`` is newest.

    Returns:
        ``(run_id, key of checkpoints/last.ckpt)``; ``(run_id, None)`` when the store holds no checkpoint to resume
        (``run_id`` is then the argument unchanged).

    Raises:
        evdet.data.storage.StoreError: the store cannot be read.
    """
    if run_id is not None:
        key = f"{run_prefix(experiment, run_id)}/checkpoints/last.ckpt"
        return run_id, (key if store.exists(key) else None)
    base = f"experiments/{experiment}/"
    candidates = [info for info in store.objects(base)
                  if info.key.endswith("/checkpoints/last.ckpt") and info.key.count("/") == 4]
    if not candidates:
        return None, None
    newest = max(candidates, key=lambda info: (info.modified, info.key))
    return newest.key[len(base):].split("/", 1)[0], newest.key


def load_module(path: str | Path, device: str = "cpu") -> tuple[DetectionModule, dict[str, Any]]:
    """Rebuild the detector from ``path`` in eval mode, reading the file weights-only (:func:`read_checkpoint`).

    Returns:
        The module (on ``device``) and its training config (the checkpoint's ``config`` hyper-parameter).

    Args:
        path: local file or ``s3://bucket/key`` (see :func:`local_checkpoint`); a checkpoint of ``evdet-train`` or of
            ``evdet-model import-rvt``.
        device: torch device string.

    Raises:
        FileNotFoundError: no file at ``path`` (or no object at the S3 key).
        CheckpointError (a ``ValueError``): one line naming the file: a pickled global other than tensors and plain
            containers (never unpickled), not a torch / Lightning / evdet checkpoint, or weights that do not fit the
            model its config describes.
        evdet.data.storage.StoreError: the S3 server cannot be used (endpoint and bucket named).
    """
    path = local_checkpoint(path)
    checkpoint = read_checkpoint(path, map_location="cpu")
    config = checkpoint_config(checkpoint, path)
    hp = checkpoint.get("hyper_parameters") or {}
    try:
        module = DetectionModule(config, eval_info=hp.get("eval_info"))
    except Exception as exc:  # noqa: BLE001 - a config this version cannot build
        raise CheckpointError(f"checkpoint {path}: its config does not build a detector ({type(exc).__name__}: "
                              f"{_one_line(exc)[:200]})") from None
    check_state_dict(module, checkpoint["state_dict"], path)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    return module.to(device), module.config

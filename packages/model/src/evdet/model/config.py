"""Composing the Hydra training configuration outside and inside ``@hydra.main``.

The command lines follow RVT's seed style: ``+experiment=NAME`` selects an experiment overlay and ``profile=local``
shrinks a run for a laptop. Because ``experiment`` sits in the defaults list (so the profile can be applied after
it), ``+experiment=NAME`` is accepted as a synonym of ``experiment=NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["CONFIG_DIR", "compose_config", "normalize_overrides", "to_container", "list_experiments", "finalize_config"]

#: Directory of the packaged Hydra configuration (``train.yaml`` and the config groups).
CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Map ``+experiment=X`` / ``++experiment=X`` to ``experiment=X``; leave every other override unchanged."""
    out = []
    for item in overrides:
        stripped = item.lstrip("+")
        out.append(stripped if stripped.startswith("experiment=") else item)
    return out


def list_experiments() -> list[str]:
    """Names of the experiment overlays in ``conf/experiment`` (sorted)."""
    return sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def finalize_config(cfg: DictConfig) -> DictConfig:
    """Fix derived values (``run_id`` resolved once, a UTC timestamp when unset) and switch the config to struct mode.

    Raises:
        omegaconf.errors.ConfigKeyError: later, when code reads a key the config does not have.
    """
    with open_dict(cfg):
        run_id = cfg.get("run_id")
        if run_id in (None, "", "None"):
            run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        cfg.run_id = str(run_id)  # materialise ${now:...} once, so every later read agrees
    OmegaConf.set_struct(cfg, True)
    return cfg


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``train.yaml`` with Hydra overrides, as ``evdet-train`` would, without starting a Hydra run.

    Args:
        overrides: Hydra override strings, e.g. ``["+experiment=plain_lstm_640x360_baseline", "profile=local"]``.

    Returns:
        The composed config in struct mode (unknown keys raise).

    Raises:
        hydra.errors.ConfigCompositionException: for an unknown config group option or key (Hydra's message names
            it, e.g. ``Could not override 'training.max_stepz'``).
    """
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=normalize_overrides(overrides))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return finalize_config(cfg)


def to_container(cfg: DictConfig) -> dict:
    """Resolved plain-dict copy of ``cfg`` (what checkpoints and result files store)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

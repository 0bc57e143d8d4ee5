"""The labeling config: `label_config.yaml` resolved for one provider and model into a frozen dataclass.

Why one resolved object: every limit, retry count and price the run used is written next to the
results (`results/config.json`), so a cost or a label can always be traced to its settings, and
prices live in the YAML, never in code. Layers, later wins: `defaults`, `providers.<name>`,
`models.<model>`, then CLI overrides. A key no layer knows is an error listing the known ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.labeling.records import RunKey
from psyedge.contract import CONTRACT_VERSION
from psyedge.prompt import evidence_prompt_hash, prompt_hash

PROVIDERS: tuple[str, ...] = ("rules", "gemini", "gemini-batch", "openai")
#: `labels`: the four labels. `evidence`: the labels plus up to three literal quotes of the
#: student that support them (checked, re-asked when not literal), for reviewers only.
LABEL_MODES: tuple[str, ...] = ("labels", "evidence")

#: Harm categories the Gemini API takes a threshold for on text prompts, and the thresholds
#: (https://ai.google.dev/gemini-api/docs/safety-settings). Counseling text about suicide must
#: be read, not refused unread: the shipped config sets BLOCK_NONE for each one.
HARM_CATEGORIES: tuple[str, ...] = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
)
THRESHOLDS: tuple[str, ...] = (
    "BLOCK_NONE", "OFF", "BLOCK_ONLY_HIGH", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_LOW_AND_ABOVE",
)


class ConfigError(ValueError):
    """The config file or a value in it is wrong: the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens; `thinking` is billed like output on Gemini 2.5."""

    input: float = 0.0
    output: float = 0.0
    thinking: float = 0.0


@dataclass(frozen=True)
class LabelConfig:
    """Everything one labeling run needs besides the data and the secrets."""

    provider: str
    model: str
    concurrency: int = 8
    rpm: float = 60
    tpm: float = 250_000
    retries: int = 6
    reasks: int = 2
    reask_blocked: int = 0
    label_mode: str = "labels"
    timeout_s: float = 60.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_output_tokens: int = 128
    max_failed_share: float = 0.05
    temperature: float = 0.0
    thinking_budget: int | None = 0
    batch_discount: float = 1.0
    price: Price = field(default_factory=Price)
    api_version: str | None = None
    safety_settings: dict[str, str] = field(default_factory=dict)
    poll_interval_s: float = 30.0
    wait_s: float = 86_400.0
    base_url: str | None = None
    api_key_env: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for `results/config.json` (holds no secret: keys only come from the env)."""
        return dataclasses.asdict(self)


_KNOWN = {f.name for f in dataclasses.fields(LabelConfig)} - {"provider", "source"}
_LAYERS = ("defaults", "providers", "models")


def _check_keys(layer: dict[str, Any], where: str, path: Path) -> None:
    unknown = sorted(set(layer) - _KNOWN)
    if unknown:
        raise ConfigError(f"{path}: {where} has unknown key(s) {unknown}; expected some of {sorted(_KNOWN)}")


def _as_mapping(obj: Any, where: str, path: Path) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: {where} must be a mapping, got {type(obj).__name__}")
    return obj


def load_config(path: str | Path, provider: str, model: str | None = None,
                overrides: dict[str, Any] | None = None) -> LabelConfig:
    """Resolve `path` for `provider` (and `model`, else the provider's default model)."""
    path = Path(path)
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r}; expected one of {list(PROVIDERS)}")
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the labeling config ({exc.strerror}); pass --config "
                          "FILE") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    raw = _as_mapping(raw, "the file", path)
    extra = sorted(set(raw) - set(_LAYERS))
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {extra}; expected {list(_LAYERS)}")
    defaults = _as_mapping(raw.get("defaults"), "defaults", path)
    providers = _as_mapping(raw.get("providers"), "providers", path)
    models = _as_mapping(raw.get("models"), "models", path)
    prov = _as_mapping(providers.get(provider), f"providers.{provider}", path)
    _check_keys(defaults, "defaults", path)
    _check_keys(prov, f"providers.{provider}", path)
    model = model or prov.get("model") or defaults.get("model")
    if not model:
        raise ConfigError(f"{path}: no model for provider {provider!r}: pass --model or set "
                          f"providers.{provider}.model")
    if model not in models:
        raise ConfigError(f"{path}: model {model!r} has no entry under models: (its limits and prices come "
                          f"from config, not code); add one, known: {sorted(models)}")
    mod = _as_mapping(models[model], f"models.{model}", path)
    _check_keys(mod, f"models.{model}", path)
    merged: dict[str, Any] = {}
    for layer in (defaults, prov, mod, overrides or {}):
        for key, value in layer.items():
            if key == "price" and isinstance(value, dict):
                merged["price"] = {**merged.get("price", {}), **value}
            else:
                merged[key] = value
    merged["model"] = model
    price = merged.pop("price", {})
    bad_price = sorted(set(price) - {"input", "output", "thinking"})
    if bad_price:
        raise ConfigError(f"{path}: price has unknown key(s) {bad_price}; expected input, output, thinking")
    try:
        cfg = LabelConfig(provider=provider, price=Price(**{k: float(v) for k, v in price.items()}),
                          source=str(path), **merged)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _check_values(cfg, path)
    return cfg


def _check_values(cfg: LabelConfig, path: Path) -> None:
    """All cross-field checks in one place, each with the fix."""
    if cfg.concurrency < 1:
        raise ConfigError(f"{path}: concurrency must be >= 1, got {cfg.concurrency}")
    if cfg.rpm < 0 or cfg.tpm < 0:
        raise ConfigError(f"{path}: rpm/tpm must be >= 0 (0 = unlimited), got rpm={cfg.rpm} tpm={cfg.tpm}")
    if min(cfg.retries, cfg.reasks, cfg.reask_blocked) < 0:
        raise ConfigError(f"{path}: retries/reasks/reask_blocked must be >= 0, got "
                          f"{cfg.retries}/{cfg.reasks}/{cfg.reask_blocked}")
    _check_safety(cfg.safety_settings, path)
    if cfg.label_mode not in LABEL_MODES:
        raise ConfigError(f"{path}: label_mode must be one of {list(LABEL_MODES)}, got {cfg.label_mode!r}")
    if not 0 < cfg.batch_discount <= 1:
        raise ConfigError(f"{path}: batch_discount is a price multiplier in (0, 1], got {cfg.batch_discount}")
    if not 0 <= cfg.max_failed_share <= 1:
        raise ConfigError(f"{path}: max_failed_share is a share of the samples in [0, 1], "
                          f"got {cfg.max_failed_share}")
    if cfg.timeout_s <= 0:
        raise ConfigError(f"{path}: timeout_s must be > 0, got {cfg.timeout_s}")
    if cfg.provider == "openai" and not cfg.base_url:
        raise ConfigError(f"{path}: provider openai needs base_url (e.g. http://127.0.0.1:8080/v1)")


def _check_safety(settings: Any, path: Path) -> None:
    """`safety_settings` is a mapping of known harm categories to known thresholds."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: safety_settings must map a harm category to a threshold, "
                          f"got {type(settings).__name__}")
    for category, threshold in settings.items():
        if category not in HARM_CATEGORIES:
            raise ConfigError(f"{path}: safety_settings has unknown category {category!r}; "
                              f"expected some of {list(HARM_CATEGORIES)}")
        if threshold not in THRESHOLDS:
            raise ConfigError(f"{path}: safety_settings.{category} = {threshold!r}; "
                              f"expected one of {list(THRESHOLDS)}")


def run_key(cfg: LabelConfig) -> RunKey:
    """The identity labels are stored and reused under; the evidence mode has its own prompt."""
    version = evidence_prompt_hash() if cfg.label_mode == "evidence" else prompt_hash()
    return RunKey(cfg.provider, cfg.model, version, CONTRACT_VERSION)

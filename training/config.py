"""Training profiles: one YAML per profile (`training/configs/<name>.yaml`) into a frozen dataclass.

Every setting has a default here and a line in the YAML; a key the dataclass does not know is an
error that lists the known ones (a typo must not silently train with a default). The resolved
config is saved next to the adapter so a result can be traced to its settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from psyedge.prompt import TEMPLATES
from training.precision import DTYPE_CHOICES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A profile YAML that is missing, malformed or inconsistent (message names file and key)."""


@dataclass(frozen=True)
class TrainConfig:
    """QLoRA settings. Defaults are the `a40` profile (the seed's recipe)."""

    # data
    template: str = "deepseek-r1"       # psyedge.prompt template the prompt is rendered with
    max_length: int = 2048              # prompt + answer tokens; longer examples are dropped, not cut
    max_train_samples: int = 0          # 0 = all (the tiny profile caps it to stay near a minute)
    sft_file: str = "sft_student_mental.jsonl"  # in <data-dir>/datasets/: make sft | psysuicide-sft
    # model
    quant_4bit: bool = True             # NF4 with double quantisation (QLoRA)
    dtype: str = "auto"                 # compute dtype: auto (training.precision) | bfloat16 | float32
    upcast_layernorm: bool = True       # norms in fp32 for stable 4-bit training
    gradient_checkpointing: bool = True
    answer_only_logits: bool = False    # output layer at answer positions only (big vocab)
    risk_loss_weight: float = 1.0       # loss weight of the risk_flag value's tokens (answer_loss)
    prior_value_dropout: float = 0.0    # share of train examples with wrong earlier values (examples)
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target: str = "all-linear"     # every Linear except lm_head
    # optimisation
    per_device_batch_size: int = 8
    eval_batch_size: int = 8
    gradient_accumulation_steps: int = 4
    learning_rate: float = 1.0e-4
    epochs: float = 3.0
    max_steps: int = -1                 # > 0 stops earlier than `epochs`
    group_by_length: bool = False       # batches of similar length: less padding, same examples
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0
    # bookkeeping
    logging_steps: int = 10
    eval_steps: int = 100
    save_steps: int = 100
    save_total_limit: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.dtype not in DTYPE_CHOICES:
            problems.append(f"dtype {self.dtype!r} is not one of {list(DTYPE_CHOICES)}")
        if self.template not in TEMPLATES:
            problems.append(f"template {self.template!r} is not one of {sorted(TEMPLATES)}")
        for name in ("max_length", "per_device_batch_size", "eval_batch_size", "gradient_accumulation_steps",
                     "lora_r", "lora_alpha", "logging_steps", "eval_steps", "save_steps", "save_total_limit"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.sft_file or "/" in self.sft_file:
            problems.append(f"sft_file must be a file name under datasets/, got {self.sft_file!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            problems.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0 or (self.epochs <= 0 and self.max_steps <= 0):
            problems.append("learning_rate and epochs (or max_steps) must be positive")
        if self.save_steps % self.eval_steps and self.eval_steps % self.save_steps:
            problems.append(f"save_steps {self.save_steps} and eval_steps {self.eval_steps} should divide "
                            "one another")
        if not 0.0 <= self.prior_value_dropout < 1.0:
            problems.append(f"prior_value_dropout must be in [0, 1), got {self.prior_value_dropout}")
        if self.risk_loss_weight < 1.0:
            problems.append(f"risk_loss_weight must be >= 1, got {self.risk_loss_weight}")
        if self.risk_loss_weight != 1.0 and not self.answer_only_logits:
            problems.append("risk_loss_weight needs answer_only_logits: true (the weighted loss is "
                            "training.answer_loss)")
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_path(profile: str) -> Path:
    return CONFIG_DIR / f"{profile}.yaml"


def known_profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(path: Path) -> TrainConfig:
    """Read a profile YAML; unknown keys and bad values fail with the file name and the fix."""
    if not path.is_file():
        raise ConfigError(f"{path} not found; known profiles: {known_profiles()} in {CONFIG_DIR}")
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - set(known))
    if "bf16" in unknown:
        raise ConfigError(f"{path}: `bf16` was replaced by `dtype: auto | bfloat16 | float32` "
                          "(auto picks bf16 where the hardware runs it natively)")
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown}; expected some of {sorted(known)}")
    for key, value in raw.items():
        expected = type(getattr(TrainConfig(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            raw[key] = float(value)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} must be {expected.__name__}, got {value!r}")
    try:
        return TrainConfig(**raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

"""Labeling services behind one interface (`base.Provider`): rules, gemini, openai.

The Gemini Batch API is not a provider but an executor (`pipeline.labeling.batch`): it submits
jobs instead of answering one chat at a time, and reuses the gemini module's request pieces.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.labeling.config import LabelConfig
from pipeline.labeling.providers.base import Provider
from pipeline.labeling.providers.gemini import GeminiProvider
from pipeline.labeling.providers.openai_compat import OpenAICompatProvider
from pipeline.labeling.providers.rules import RulesProvider

#: Provider name (config `provider`) -> how to build it from the resolved config. The gemini one
#: reads its key from the environment and raises `MissingKeyError` when there is none.
PROVIDER_CLASSES: dict[str, Callable[[LabelConfig], Provider]] = {
    "rules": lambda cfg: RulesProvider(cfg.model),
    "gemini": GeminiProvider,
    "openai": OpenAICompatProvider,
}


def make_provider(cfg: LabelConfig) -> Provider:
    """The provider of `cfg`; its `secrets` are what the command line scrubs from the logs."""
    return PROVIDER_CLASSES[cfg.provider](cfg)

"""GGUF metadata keys and the `psyedge.json` manifest that ties a model file to this contract.

The merge stage writes `psyedge.json` next to the merged weights; the converter copies it into
GGUF keys under `psyedge.`; the Screener reads them back to pick the chat template and to refuse
a model trained on another contract. One table of keys, used by all three.
"""

from __future__ import annotations

from typing import Any

from psyedge.contract import CONTRACT_VERSION
from psyedge.prompt import get_template, prompt_hash

KEY_PREFIX = "psyedge."
#: GGUF key -> manifest field. All values are strings in GGUF.
KEYS: dict[str, str] = {
    "psyedge.contract_version": "contract_version",
    "psyedge.prompt_hash": "prompt_hash",
    "psyedge.template": "template",
    "psyedge.base_model": "base_model",
    "psyedge.adapter_hash": "adapter_hash",
}


def make_manifest(template: str, base_model: str, adapter_hash: str = "") -> dict[str, Any]:
    """The manifest for a model trained with this SDK's contract and `template`."""
    get_template(template)  # fail early on an unknown name
    return {
        "contract_version": CONTRACT_VERSION,
        "prompt_hash": prompt_hash(),
        "template": template,
        "base_model": base_model,
        "adapter_hash": adapter_hash,
    }


def manifest_to_gguf(manifest: dict[str, Any]) -> dict[str, str]:
    """Manifest fields as GGUF string key/values."""
    return {key: str(manifest.get(field, "")) for key, field in KEYS.items()}


def manifest_from_gguf(kv: dict[str, Any]) -> dict[str, str] | None:
    """Read the manifest back from GGUF key/values (None when the file has no psyedge keys)."""
    if not any(k.startswith(KEY_PREFIX) for k in kv):
        return None
    return {field: str(kv.get(key, "")) for key, field in KEYS.items()}

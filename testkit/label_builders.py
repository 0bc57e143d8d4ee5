"""Small labeling inputs for the tests: shards of varied student conversations and a fast config."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.layout import Layout

#: Sentences mixed into the conversations so prompts (and the fake's labels) differ.
_USER = ["我最近考试压力很大，每天都睡不着。", "室友总是排挤我，我很孤独。",
         "我对学习提不起兴趣，觉得没意义。",
         "一想到期末就心慌，手抖，非常焦虑。", "我很自卑，觉得自己没用。", "有时候真的不想活了。",
         "和同学吵架了，心情不好。", "导师的要求太高，我很担心毕业。"]
_COUNSELOR = ["听起来你最近承受了很多。", "能具体说说发生了什么吗？", "你愿意多讲一点那时的感受吗？"]


def conversation(i: int) -> list[dict[str, str]]:
    """A distinct conversation for every i (the id number is in the text)."""
    return [{"role": "user", "text": f"{_USER[i % len(_USER)]}（第{i}次）"},
            {"role": "assistant", "text": _COUNSELOR[i % len(_COUNSELOR)]},
            {"role": "user", "text": _USER[(i * 3 + 1) % len(_USER)]}]


def write_shards(data_dir: Path, shards: int, per_shard: int, duplicates: int = 0) -> list[str]:
    """Write `input_part_NNNN.jsonl` files; the last `duplicates` records of each shard repeat an
    earlier conversation (dedup must label them once). Returns all ids in order."""
    ids = []
    layout = Layout(data_dir)
    layout.labeling.mkdir(parents=True, exist_ok=True)
    n = 0
    for s in range(shards):
        with open(layout.shard(s), "w", encoding="utf-8") as fh:
            for j in range(per_shard):
                conv_no = n - 1 if j >= per_shard - duplicates else n
                sid = f"t{s}-{j:03d}"
                fh.write(json.dumps({"id": sid, "source": "test", "topic": "学业",
                                     "conversation": conversation(conv_no), "meta": {}},
                                    ensure_ascii=False) + "\n")
                ids.append(sid)
                n += 1
    return ids


FAST_CONFIG = ("""
defaults:
  concurrency: {concurrency}
  rpm: {rpm}
  tpm: 0
  retries: 6
  reasks: 2
  timeout_s: {timeout}
  backoff_initial_s: 0.01
  backoff_max_s: 0.05
  # The fault tests check what is journaled for every sample, not the exit code; the threshold
  # has its own test (test_label_threshold.py) with the shipped default.
  max_failed_share: {max_failed_share}
providers:
  rules: {{model: rules-v1, concurrency: 1}}
"""
    "  gemini: {{model: fake-flash, api_version: {api_version}, safety_settings: "
    "{{HARM_CATEGORY_DANGEROUS_CONTENT: BLOCK_NONE, HARM_CATEGORY_HARASSMENT: BLOCK_NONE}}}}\n"
    "  gemini-batch: {{model: fake-flash, api_version: v1beta, batch_discount: 0.5, poll_interval_s: 0.02, "
    "wait_s: {wait}}}\n"
"""  openai: {{model: fake-flash, base_url: "{openai_url}", api_key_env: PSYEDGE_TEST_OPENAI_KEY}}
models:
  fake-flash:
    price: {{input: 0.30, output: 2.50, thinking: 2.50}}
  rules-v1:
    price: {{input: 0.0, output: 0.0, thinking: 0.0}}
""")


def write_config(path: Path, concurrency: int = 8, rpm: float = 0, timeout: float = 0.5,
                 api_version: str = "v1beta", wait: float = 10, openai_url: str = "http://127.0.0.1:9/v1",
                 max_failed_share: float = 1.0) -> Path:
    path.write_text(FAST_CONFIG.format(concurrency=concurrency, rpm=rpm, timeout=timeout,
                                       api_version=api_version, wait=wait, openai_url=openai_url,
                                       max_failed_share=max_failed_share), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every line must parse (the tests' 'no torn line' check)."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]

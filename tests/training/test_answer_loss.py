"""The answer-only loss equals the full-logits masked loss, from a fraction of the logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from psyedge.contract import canonical_json
from psyedge.prompt import INSTRUCTION, get_template
from training.answer_loss import LeftPadCollator, answer_loss
from training.examples import PadCollator, encode_record


def test_left_padded_answer_loss_equals_the_full_right_padded_loss(tiny_base: Path,
                                                                   tiny_tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    texts = ["来访者：最近考试压力很大。\n",
             "来访者：我睡不着。\n咨询师：说说看？\n来访者：不想活了。\n",
             "来访者：室友总说我坏话，我想打他。\n"]
    outputs = [canonical_json({"depression_level": d, "anxiety_level": a, "risk_flag": r,
                               "student_distress_score": s})
               for d, a, r, s in [(1, 2, "none", 4), (3, 2, "suicidal", 9), (0, 1, "violence", 5)]]
    template = get_template("deepseek-r1")
    batch = [encode_record(tiny_tokenizer, {"instruction": INSTRUCTION, "input": t, "output": o},
                           template, bos=True)
             for t, o in zip(texts, outputs, strict=True)]
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        full = model(**PadCollator(pad)(batch)).loss
        left = LeftPadCollator(pad)(batch)
        ours = answer_loss(model, left)
    width = left["input_ids"].shape[1]
    assert left["keep"] < width / 4  # most positions never reach the output layer
    assert ours.item() == pytest.approx(full.item(), rel=1e-5)

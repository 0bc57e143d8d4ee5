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


def test_the_risk_weight_counts_the_risk_value_tokens_w_times(tiny_base: Path, tiny_tokenizer) -> None:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    template = get_template("deepseek-r1")
    batch = []
    for text, flag in [("来访者：不想活了。\n", "suicidal"), ("来访者：还好。\n", "none")]:
        out = canonical_json({"depression_level": 1, "anxiety_level": 1, "risk_flag": flag,
                              "student_distress_score": 3})
        ex = encode_record(tiny_tokenizer, {"instruction": INSTRUCTION, "input": text, "output": out},
                           template, bos=True)
        marked = [i for i, m in zip(ex["input_ids"], ex["risk_mask"], strict=True) if m]
        assert tiny_tokenizer.decode(marked).replace(" ", "") == flag  # exactly the value
        batch.append(ex)
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        plain = answer_loss(model, LeftPadCollator(pad)(batch))
        inputs = LeftPadCollator(pad, risk_weight=5.0)(batch)
        weighted = answer_loss(model, inputs)
        # the same weighted mean from the full right-padded logits
        full = PadCollator(pad)(batch)
        logits = model(**{k: full[k] for k in ("input_ids", "attention_mask")}).logits[:, :-1]
        targets = full["labels"][:, 1:]
        risk = torch.tensor([ex["risk_mask"] + [0] * (full["labels"].shape[1] - len(ex["risk_mask"]))
                             for ex in batch])[:, 1:]
        ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
        w = (1.0 + 4.0 * risk) * (targets != -100)
        expected = (ce * w).sum() / w.sum()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)
    assert plain.item() == pytest.approx((ce.sum() / (targets != -100).sum()).item(), rel=1e-5)
    n_risk = sum(sum(ex["risk_mask"]) for ex in batch)
    assert n_risk >= 2 and float(w.sum()) == (targets != -100).sum().item() + 4 * n_risk


def test_corrupted_earlier_values_are_wrong_and_never_a_target(tiny_tokenizer) -> None:
    import json
    import random

    from training.examples import IGNORE_INDEX, encode_records

    truth = {"depression_level": 2, "anxiety_level": 1, "risk_flag": "suicidal",
             "student_distress_score": 7}
    rec = {"instruction": INSTRUCTION, "input": "来访者：不想活了。\n", "output": canonical_json(truth)}
    template = get_template("deepseek-r1")
    plain = encode_record(tiny_tokenizer, rec, template, bos=True)
    bad = encode_record(tiny_tokenizer, rec, template, bos=True, corrupt=random.Random(1))
    n_prompt = next(i for i, v in enumerate(plain["labels"]) if v != IGNORE_INDEX)
    shown = tiny_tokenizer.decode(bad["input_ids"][n_prompt:]).replace(" ", "")
    seen = json.loads(shown[: shown.index("}") + 1])
    assert seen["depression_level"] != 2 and seen["anxiety_level"] != 1
    assert (seen["risk_flag"], seen["student_distress_score"]) == ("suicidal", 7)
    targets = [t for t in bad["labels"][n_prompt:] if t != IGNORE_INDEX]
    assert tiny_tokenizer.decode(targets).replace(" ", "").count(str(seen["depression_level"])) == 0
    assert len(targets) == len(plain["labels"]) - n_prompt - 2  # two single-digit values hidden
    assert bad["risk_mask"] == plain["risk_mask"]  # the risk value is where it was, still a target
    share = encode_records(tiny_tokenizer, [rec] * 200, template, True, 4096, prior_dropout=0.5)
    assert 70 < share.corrupted < 130  # about half, drawn with the seed

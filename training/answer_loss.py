"""Loss on the answer only, with the output layer computed only where the answer is predicted.

Gemma 3's output layer is 262,144 x 640: on a batch of 8 x 200 tokens the full logits are 1.7 G
multiply-adds forward (about as much as the 18 layers together) and 420M floats in memory, yet
the loss reads about 30 positions per example (the canonical JSON answer). So the batch is padded
on the left: every answer then ends at the batch's last position, and the model is asked for the
logits of the last `k` positions only (transformers' `logits_to_keep`), `k` = the longest answer
plus one (logits at t predict token t+1). Position ids are counted from each row's first real
token, so a left-padded row sees exactly the positions it would see alone.

The loss equals the usual masked cross-entropy over the answer tokens (the tests check it against
the full-logits loss on the tiny model). With `risk_weight` w > 1 it is a weighted mean instead:
the tokens of the risk_flag value count w times (`training.examples.value_mask`), so the
one choice where a miss is the worst failure is not drowned by ~30 tokens of JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.examples import IGNORE_INDEX


@dataclass
class LeftPadCollator:
    """Left-pads a batch and says how many trailing logits the loss needs (`keep`)."""

    pad_token_id: int
    risk_weight: float = 1.0  # loss weight of the risk_flag value's tokens (1 = plain mean)

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(ex["input_ids"]) for ex in batch)
        ids, labels, mask, risk = [], [], [], []
        keep = 1
        for ex in batch:
            n = len(ex["input_ids"])
            first = next(i for i, v in enumerate(ex["labels"]) if v != IGNORE_INDEX)
            keep = max(keep, n - first + 1)
            ids.append([self.pad_token_id] * (width - n) + ex["input_ids"])
            labels.append([IGNORE_INDEX] * (width - n) + ex["labels"])
            mask.append([0] * (width - n) + [1] * n)
            risk.append([0] * (width - n) + ex.get("risk_mask", [0] * n))
        attention = torch.tensor(mask)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
               "attention_mask": attention, "position_ids": positions, "keep": keep}
        if self.risk_weight != 1.0:
            out["weights"] = 1.0 + (self.risk_weight - 1.0) * torch.tensor(risk, dtype=torch.float32)
        return out


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Cross-entropy over the answer tokens, from the last `keep` positions' logits only.

    A plain mean, or with `weights` in the batch (LeftPadCollator's risk_weight) the weighted
    mean sum(w * ce) / sum(w) over the answer tokens.
    """
    import torch.nn.functional as F

    keep = int(batch["keep"])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1, :].float()          # [B, keep-1, V]: predict the next token
    targets = batch["labels"][:, -(keep - 1):]      # [B, keep-1]
    if "weights" not in batch:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX)
    ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                         reduction="none")           # [B, keep-1]; 0 where ignored
    weights = batch["weights"][:, -(keep - 1):] * (targets != IGNORE_INDEX)
    return (ce * weights).sum() / weights.sum()


def answer_loss_trainer():  # -> type[transformers.Trainer] (imported lazily: heavy)
    """A `Trainer` whose loss is `answer_loss` (use with `LeftPadCollator`)."""
    import torch
    from transformers import Trainer

    class AnswerLossTrainer(Trainer):
        # `answer_loss` is a per-batch mean, so the Trainer must divide it by the accumulation
        # steps itself; it would not, since Gemma's forward accepts loss kwargs.
        loss_is_scaled_for_ga = False

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            loss = answer_loss(model, inputs)
            return (loss, None) if return_outputs else loss

        def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                            ignore_keys: list[str] | None = None) -> tuple[Any, None, None]:
            # Evaluation needs the loss only; the Trainer's default would look for logits in
            # the model outputs, which this loss never materialises beyond the answer.
            with torch.no_grad():
                loss = answer_loss(model, self._prepare_inputs(inputs))
            return loss.detach(), None, None

    return AnswerLossTrainer

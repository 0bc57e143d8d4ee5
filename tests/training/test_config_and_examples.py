"""Profiles, prompt masking, EOS labels, and fail-fast checks (no training here: seconds)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from psyedge.contract import canonical_json
from psyedge.prompt import INSTRUCTION, get_template, render, transcript
from training import train
from training.config import ConfigError, load_config, profile_path
from training.examples import IGNORE_INDEX, PadCollator, TemplateMismatch, encode_records, wants_bos

ROOT = Path(__file__).resolve().parents[2]
LABELS = {"depression_level": 2, "anxiety_level": 1, "risk_flag": "suicidal", "student_distress_score": 7}


def test_a40_profile_is_the_seed_recipe() -> None:
    cfg = load_config(profile_path("a40"))
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target) == (16, 32, 0.05, "all-linear")
    assert (cfg.per_device_batch_size, cfg.gradient_accumulation_steps) == (8, 4)
    assert (cfg.learning_rate, cfg.epochs, cfg.max_steps) == (1e-4, 3.0, -1)
    assert cfg.quant_4bit and cfg.dtype == "auto" and cfg.upcast_layernorm and cfg.template == "deepseek-r1"


def test_tiny_profile_uses_the_same_method() -> None:
    tiny, a40 = load_config(profile_path("tiny")), load_config(profile_path("a40"))
    for key in ("quant_4bit", "dtype", "upcast_layernorm", "lora_r", "lora_alpha", "lora_dropout",
                "lora_target", "template", "per_device_batch_size"):
        assert getattr(tiny, key) == getattr(a40, key), key


@pytest.mark.parametrize("profile", ["gemma-cpu", "gemma-a40"])
def test_gemma_profiles_train_the_answer_only_on_psysuicide(profile: str) -> None:
    from training.psysuicide_sft import OUT_NAME

    cfg = load_config(profile_path(profile))
    assert cfg.answer_only_logits and cfg.sft_file == OUT_NAME and cfg.template == "raw"
    assert not cfg.quant_4bit and cfg.dtype == "auto" and cfg.lora_target == "all-linear"
    assert not load_config(profile_path("a40")).answer_only_logits
    assert load_config(profile_path("a40")).sft_file == "sft_student_mental.jsonl"


def test_unknown_and_mistyped_keys_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_rank: 16\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['lora_rank'\].*lora_r"):
        load_config(bad)
    bad.write_text("learning_rate: fast\n")
    with pytest.raises(ConfigError, match="learning_rate must be float"):
        load_config(bad)
    bad.write_text("template: qwen\n")
    with pytest.raises(ConfigError, match="template 'qwen'"):
        load_config(bad)
    bad.write_text("sft_file: datasets/psysuicide_sft.jsonl\n")
    with pytest.raises(ConfigError, match="sft_file must be a file name under datasets/"):
        load_config(bad)


def _record(text: str = "最近考试压力很大，我每天晚上都睡不着。") -> dict:
    conv = [{"role": "user", "text": text}]
    from psyedge.prompt import prepare

    return {"id": "x", "instruction": INSTRUCTION, "input": transcript(prepare(conv)[0]),
            "output": canonical_json(LABELS), "conversation": conv}


def test_prompt_masked_answer_and_eos_learned(tiny_base: Path, tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    rec = _record()
    enc = encode_records(tok, [rec], "deepseek-r1", wants_bos(tiny_base, tok), 1024)
    ex = enc.examples[0]
    prompt_ids = [tok.bos_token_id, *tok(render(rec["conversation"]), add_special_tokens=False)["input_ids"]]
    n = len(prompt_ids)
    assert ex["input_ids"][:n] == prompt_ids
    assert ex["labels"][:n] == [IGNORE_INDEX] * n
    answer = ex["labels"][n:]
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == canonical_json(LABELS)


def test_eos_label_survives_when_pad_is_eos(tiny_base: Path, tiny_tokenizer) -> None:
    """DeepSeek-R1-Distill pads with EOS: padding must be masked by position, EOS kept."""
    tok = tiny_tokenizer
    recs = [_record(), _record("我想和你聊一聊，我最近总是想到死，觉得活着没有意义，也不想去上课。")]
    enc = encode_records(tok, recs, "deepseek-r1", True, 1024)
    batch = PadCollator(pad_token_id=tok.eos_token_id)(enc.examples)
    short = min(range(2), key=lambda i: len(enc.examples[i]["input_ids"]))
    n = len(enc.examples[short]["input_ids"])
    row_ids, row_labels = batch["input_ids"][short].tolist(), batch["labels"][short].tolist()
    assert row_ids[n:] and set(row_ids[n:]) == {tok.eos_token_id}  # padded with the EOS id
    assert set(row_labels[n:]) == {IGNORE_INDEX}
    assert row_labels[n - 1] == tok.eos_token_id  # the real EOS is still a label
    assert batch["attention_mask"][short].tolist() == [1] * n + [0] * (len(row_ids) - n)


def test_wrong_template_and_long_examples(tiny_tokenizer) -> None:
    with pytest.raises(TemplateMismatch, match="chatml"):
        encode_records(tiny_tokenizer, [_record()], "chatml", True, 1024)
    enc = encode_records(tiny_tokenizer, [_record(), _record("长" * 1900)], "deepseek-r1", True, 300)
    assert len(enc.examples) == 1 and enc.dropped_too_long == 1
    assert get_template("raw").eos == ""  # raw answers end at "}": nothing to check
    encode_records(tiny_tokenizer, [_record()], "raw", True, 1024)


def _run_no_torch(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter that fails if torch was imported."""
    wrapped = f"import sys\n{code}\nassert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)\n"
    return subprocess.run([sys.executable, "-c", wrapped], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_missing_base_model_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = _run_no_torch(
        "from training.train import main\n"
        f"rc = main(['--profile', 'a40', '--base-model', '{tmp_path}/nope', '--data-dir', '{tmp_path}', "
        f"'--out', '{tmp_path}/run'])")
    assert proc.returncode == 1, proc.stderr
    assert f"base model {tmp_path}/nope does not exist" in proc.stderr and "BASE_MODEL" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 30


def test_missing_sft_and_bad_profile_fail_fast(tiny_base: Path, tmp_path: Path) -> None:
    proc = _run_no_torch(
        "from training.train import main\n"
        f"rc = main(['--profile', 'tiny', '--base-model', '{tiny_base}', '--data-dir', '{tmp_path}', "
        f"'--out', '{tmp_path}/run'])")
    assert proc.returncode == 1 and "make sft" in proc.stderr
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "sft_student_mental.jsonl").write_text("")
    proc = _run_no_torch(
        "from training.train import main\n"
        f"rc = main(['--profile', 'h100', '--base-model', '{tiny_base}', '--data-dir', '{tmp_path}', "
        f"'--out', '{tmp_path}/run'])")
    assert proc.returncode == 1 and "known profiles" in proc.stderr and "a40" in proc.stderr
    proc = _run_no_torch(
        "from training.train import main\n"
        f"rc = main(['--profile', 'gemma-cpu', '--base-model', '{tiny_base}', "
        f"'--data-dir', '{tmp_path}', "
        f"'--out', '{tmp_path}/run'])")
    assert proc.returncode == 1 and "psysuicide_sft.jsonl" in proc.stderr
    assert "make psysuicide-sft" in proc.stderr and "Traceback" not in proc.stderr


def test_merge_missing_adapter_fails_fast(tiny_base: Path, tmp_path: Path) -> None:
    proc = _run_no_torch(
        "from training.merge import main\n"
        f"rc = main(['--base-model', '{tiny_base}', '--adapter', '{tmp_path}/adapter', '--out', "
        f"'{tmp_path}/m'])")
    assert proc.returncode == 1 and "make train" in proc.stderr and "adapter_model.safetensors" in proc.stderr


def test_sbatch_command_and_script(tiny_base: Path, tmp_path: Path) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "sft_student_mental.jsonl").write_text("")
    job = train.preflight("tiny", str(tiny_base), tmp_path, tmp_path / "run", None)
    cmd = train.sbatch_command(job, ["--time=00:10:00"])
    assert cmd[:2] == ["sbatch", "--parsable"] and str(train.SBATCH_SCRIPT) in cmd
    assert f"--output={tmp_path / 'run' / 'logs' / 'slurm-%j.out'}" in cmd and "--time=00:10:00" in cmd
    assert cmd[cmd.index("--profile") + 1] == "tiny" and "--config" not in cmd
    script = train.SBATCH_SCRIPT.read_bytes()
    assert b"\r" not in script, "the sbatch script must have UNIX line endings"
    text = script.decode()
    for line in ("#SBATCH --partition=A40", "#SBATCH --gres=gpu:1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=32G", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@", "#SBATCH --time=",
                 "%j", "scontrol requeue", f"REQUEUE_EXIT={train.REQUEUE_EXIT}", "torch.distributed.run",
                 "srun"):
        assert line in text, line
    assert subprocess.run(["bash", "-n", str(train.SBATCH_SCRIPT)]).returncode == 0

"""The API key never reaches a log, a result file or an error; CLI mistakes exit 2 with the fix."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline import label
from pipeline.labeling.records import redact
from testkit.fake_gemini import FakeGemini, random_faults
from testkit.label_builders import write_config, write_shards


def _all_text(root: Path) -> str:
    return "\n".join(p.read_text("utf-8", errors="replace") for p in root.rglob("*") if p.is_file())


def test_key_absent_from_log_cost_results_and_errors(tmp_path: Path, fake: FakeGemini, gemini_env: dict,
                                                     capsys: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    fake.faults = random_faults(rate=0.3, seed=1, always_bad_every=4)
    write_shards(tmp_path, shards=1, per_shard=12)
    cfg = write_config(tmp_path / "c.yaml", timeout=0.3)
    fake.slow_s = 0.5
    assert label.main(["--provider", "gemini", "--data-dir", str(tmp_path), "--config", str(cfg), "-v"]) == 0
    res = tmp_path / "labeling/results"
    assert (res / "labeling.log").read_text() and (res / "cost.json").exists()
    # a wrong key: the fake echoes the key it got in its error message, which must be scrubbed
    wrong = "AIzaWRONG-key-0123456789"
    gemini_env_key = fake.api_key
    monkeypatch.setenv("GEMINI_API_KEY", wrong)
    (res / "input_part_0000.jsonl").unlink()
    rc = label.main(["--provider", "gemini", "--data-dir", str(tmp_path), "--config", str(cfg)])
    out = capsys.readouterr()
    assert rc == 1 and "Gemini refused the request: HTTP 400" in out.err
    assert wrong not in out.err and "[REDACTED]" in out.err
    for secret in (gemini_env_key, wrong):
        assert secret not in _all_text(tmp_path), "key leaked into a file"
        assert secret not in out.out + out.err
        assert secret not in caplog.text
    assert fake.stats.api_keys == {gemini_env_key, wrong}  # the keys did travel, in the header only


def test_missing_key_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    write_shards(tmp_path, shards=1, per_shard=1)
    rc = label.main(["--provider", "gemini", "--data-dir", str(tmp_path), "--config",
                     str(write_config(tmp_path / "c.yaml"))])
    assert rc == 2 and "export GEMINI_API_KEY" in capsys.readouterr().err


def test_google_api_key_is_accepted(tmp_path: Path, fake: FakeGemini,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", fake.api_key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
    write_shards(tmp_path, shards=1, per_shard=1)
    assert label.main(["--provider", "gemini", "--data-dir", str(tmp_path),
                       "--config", str(write_config(tmp_path / "c.yaml"))]) == 0


@pytest.mark.parametrize("args, message", [
    (["--shard", "0042"], "input_part_0042.jsonl does not exist"),
    (["--shard", "x7"], "--shard must be a number"),
    (["--model", "no-such-model"], "model 'no-such-model' has no entry under models"),
])
def test_usage_errors(tmp_path: Path, args: list[str], message: str,
                      capsys: pytest.CaptureFixture[str]) -> None:
    write_shards(tmp_path, shards=1, per_shard=1)
    rc = label.main(["--provider", "rules", "--data-dir", str(tmp_path),
                     "--config", str(write_config(tmp_path / "c.yaml")), *args])
    assert rc == 2 and message in capsys.readouterr().err


def test_no_shards_and_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.yaml")
    assert label.main(["--provider", "rules", "--data-dir", str(tmp_path), "--config", str(cfg)]) == 2
    assert "run `make data` first" in capsys.readouterr().err
    write_shards(tmp_path, shards=1, per_shard=1)
    cfg.write_text(cfg.read_text().replace("reasks: 2", "reasks: 2\n  re_asks: 3"))
    assert label.main(["--provider", "rules", "--data-dir", str(tmp_path), "--config", str(cfg)]) == 2
    assert "unknown key(s) ['re_asks']" in capsys.readouterr().err


def test_redact_scrubs_plain_and_quoted() -> None:
    assert redact("key=ab/cd1234 and ab%2Fcd1234", ["ab/cd1234"]) == "key=[REDACTED] and [REDACTED]"

"""CPsyCounD parser: speakers, continuation lines, stage directions, encodings, bad files."""

from __future__ import annotations

from pathlib import Path

from pipeline_builders import student_dialogue, write_case

from pipeline.parsers import cpsycound
from pipeline.parsers.base import Drop, Record, decode_bytes


def parse(tmp_path: Path, text: str | bytes, name: str = "case_7.txt") -> Record | Drop:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return cpsycound.parse_file(path)


def test_plain_dialogue(tmp_path: Path) -> None:
    rec = parse(tmp_path, "来访者：你好。\n\n心理咨询师：你好，请坐。\n\n来访者：我很焦虑。\n")
    assert isinstance(rec, Record)
    assert rec.id == "cpsycound-case_7" and rec.source == "cpsycound" and rec.topic is None
    assert rec.turns == [("user", "你好。"), ("assistant", "你好，请坐。"), ("user", "我很焦虑。")]


def test_continuation_lines_join_the_current_turn(tmp_path: Path) -> None:
    rec = parse(tmp_path,
                "来访者：怎么办？\n\n心理咨询师：几个建议：\n1. 深呼吸：慢慢吸气。\n2. 倾听：先听对方说。\n"
                          "此外，保持作息。\n\n来访者：好。\n")
    assert isinstance(rec, Record)
    assert rec.turns[1] == ("assistant",
                            "几个建议：\n1. 深呼吸：慢慢吸气。\n2. 倾听：先听对方说。\n此外，保持作息。")
    assert rec.meta["continuation_lines"] == 3


def test_stage_directions_go_to_meta(tmp_path: Path) -> None:
    rec = parse(tmp_path, "（本次为初次访谈）\n来访者：（沉默片刻）是的，我很难过。\n（一段时间后）\n"
                          "心理咨询师：我们试试认知行为疗法（CBT）。\n")
    assert isinstance(rec, Record)
    assert rec.turns == [("user", "是的，我很难过。"), ("assistant", "我们试试认知行为疗法（CBT）。")]
    assert rec.meta["stage_directions"] == ["本次为初次访谈", "沉默片刻", "一段时间后"]


def test_other_speakers_map_to_user_and_counselor_roleplay_to_assistant(tmp_path: Path) -> None:
    rec = parse(tmp_path,
                "来访者（姚先生）：我很纠结。\n心理咨询师（扮演丈夫）：我理解你。\n妈妈：她不听话。\n"
                          "女儿：我压力很大。\nA：离开吧。\nB：留下吧。\n来访者1：嗯。\n咨询师：好的，我们继续。\n")
    assert isinstance(rec, Record)
    assert [r for r,
            _ in rec.turns] == ["user", "assistant", "user", "user", "user", "user", "user", "assistant"]
    assert rec.meta["other_speakers"] == ["妈妈", "女儿", "A", "B"]


def test_clause_before_a_colon_is_not_a_speaker(tmp_path: Path) -> None:
    rec = parse(tmp_path,
                "来访者：我想问问。\n心理咨询师：我的建议是：\n具体步骤：先休息。\n你可以：多运动。\n")
    assert isinstance(rec, Record)
    assert rec.turns[1] == ("assistant", "我的建议是：\n具体步骤：先休息。\n你可以：多运动。")


def test_ascii_colon_crlf_bom_and_gb18030(tmp_path: Path) -> None:
    lines = student_dialogue(1)
    expected = [("user" if s == "来访者" else "assistant", t) for s, t in lines]
    a = cpsycound.parse_file(write_case(tmp_path, "case_1.txt", lines, colon=":"))
    b = cpsycound.parse_file(write_case(tmp_path, "case_2.txt", lines, newline="\r\n", bom=True))
    c = cpsycound.parse_file(write_case(tmp_path, "case_3.txt", lines, encoding="gb18030"))
    for rec in (a, b, c):
        assert isinstance(rec, Record)
        assert rec.turns == expected
    assert isinstance(c, Record) and c.meta["encoding"] == "gb18030"


def test_bad_files_are_drops_not_exceptions(tmp_path: Path) -> None:
    assert parse(tmp_path, b"", "case_1.txt") == Drop("cpsycound", str(tmp_path / "case_1.txt"), "empty_file",
                                                     "0 bytes", id="cpsycound-case_1")
    blank = parse(tmp_path, "\ufeff \r\n\u3000\n", "case_2.txt")
    assert isinstance(blank, Drop) and blank.reason == "empty_file"
    bad = parse(tmp_path, b"\x80\xff\xfe\xfa" * 4, "case_3.txt")
    assert isinstance(bad, Drop) and bad.reason == "undecodable" and "offset" in bad.detail
    plain = parse(tmp_path, "这里只有一段没有说话人的文字。\n", "case_4.txt")
    assert isinstance(plain, Drop) and plain.reason == "no_turns"


def test_files_in_natural_order_and_data_subfolder(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        write_case(tmp_path / "Data", f"case_{i}.txt", student_dialogue(i))
    (tmp_path / "Data" / "README.md").write_text("not a case")
    assert [p.name for p in cpsycound.list_files(tmp_path)] == ["case_1.txt", "case_2.txt", "case_10.txt"]


def test_utf16_with_bom() -> None:
    assert decode_bytes("来访者：你好".encode("utf-16")) == ("来访者：你好", "utf-16")

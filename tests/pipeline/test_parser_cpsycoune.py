"""CPsyCounE parser: topic from the folder, ids, continuation strings, bad files."""

from __future__ import annotations

from pathlib import Path

from pipeline_builders import write_e

from pipeline.parsers import cpsycoune
from pipeline.parsers.base import Drop, Record


def test_topic_id_and_roles(tmp_path: Path) -> None:
    path = write_e(tmp_path, "Family Relationship", "3.json",
                   ["求助者：我很焦虑。", "支持者：能说说吗？", "补充一句：我是学生。",
                    "求助者:考试快到了。"])
    rec = cpsycoune.parse_file(path, "Family Relationship")
    assert isinstance(rec, Record)
    assert rec.id == "cpsycoune-Family_Relationship-3" and rec.topic == "Family Relationship"
    assert rec.turns == [("user", "我很焦虑。"), ("assistant", "能说说吗？\n补充一句：我是学生。"),
                         ("user", "考试快到了。")]
    assert rec.meta["file"] == "Family Relationship/3.json"


def test_bad_files(tmp_path: Path) -> None:
    folder = tmp_path / "Career"
    folder.mkdir()
    (folder / "1.json").write_text('["求助者：你好", "支持者', encoding="utf-8")
    (folder / "2.json").write_text("", encoding="utf-8")
    (folder / "3.json").write_bytes(b"\x80\xff\xfe\xfa")
    write_e(tmp_path, "Career", "4.json", {"dialogue": ["求助者：你好"]})
    write_e(tmp_path, "Career", "5.json", ["没有前缀的一句话"])
    got = [cpsycoune.parse_file(p, t) for p, t in cpsycoune.list_files(tmp_path)]
    assert all(isinstance(d, Drop) for d in got)
    assert [d.reason for d in got if isinstance(d, Drop)] == ["bad_json", "empty_file", "undecodable",
                                                              "bad_schema", "no_turns"]
    first = got[0]
    assert isinstance(first, Drop) and first.path.endswith("Career/1.json") and "line 1" in first.detail


def test_listing_sorts_topics_and_files(tmp_path: Path) -> None:
    for topic, n in (("Sex", 10), ("Career", 2), ("Sex", 9)):
        write_e(tmp_path, topic, f"{n}.json", ["求助者：a", "支持者：b"])
    (tmp_path / "README.md").write_text("x")
    assert [(p.name, t) for p,
            t in cpsycoune.list_files(tmp_path)] == [("2.json", "Career"), ("9.json", "Sex"),
                                                                         ("10.json", "Sex")]

"""Hand-written Chinese counseling sentences for the tiny model's tokenizer (no downloads, no real data).

The tiny base model only has to exercise the pipeline, so its tokenizer is trained on this short
text plus the SDK's own strings. The sentences cover the words the prompt and the synthetic
training sets use (exam, roommate, sleep, the risk words) so they become single tokens and the
tiny model's sequences stay short enough to train on two CPU cores in about a minute.
"""

from __future__ import annotations

SENTENCES: tuple[str, ...] = (
    "最近考试压力很大，我每天晚上都睡不着。",
    "我和室友的关系很紧张，回到宿舍就觉得很压抑。",
    "期末考试快到了，我担心自己挂科，心里一直很焦虑。",
    "我觉得自己什么都做不好，对什么都提不起兴趣。",
    "这学期的课程太多了，作业写不完，我很害怕老师批评我。",
    "父母对我的成绩要求很高，我不想让他们失望。",
    "我有时候会想，如果我不在了，大家会不会更轻松。",
    "我最近总是想到死，觉得活着没有意义。",
    "我用刀划过自己的手臂，这样心里会好受一点。",
    "我真想打他一顿，他总是在背后说我的坏话。",
    "你能具体说说是什么让你感到这么难受吗？",
    "听起来你承受了很多压力，谢谢你愿意告诉我。",
    "我们可以一起想一想，有哪些办法可以帮助你放松下来。",
    "你提到晚上睡不着，这种情况持续多久了？",
    "你有没有想过伤害自己的想法？",
    "我很担心你的安全，我们可以联系学校的心理中心。",
    "高考失利以后，我一直觉得很自卑，不敢和同学说话。",
    "考研的复习进度很慢，我每天都很慌，心跳很快。",
    "我在班里没有朋友，午饭总是一个人吃。",
    "辅导员找我谈话，说我最近缺课太多了。",
    "我失恋了，整个人都很低落，什么也吃不下。",
    "每次上台发言我都会手抖出汗，脑子一片空白。",
    "我想退学，但是又怕家里人不同意。",
    "我知道这些想法不对，可是我控制不住自己。",
    "谢谢老师，和你聊完以后我感觉好多了。",
    "今天天气很好，我和同学去图书馆学习了。",
    "我对未来很迷茫，不知道毕业以后该做什么。",
    "我经常失眠，白天上课注意力不集中，记忆力也变差了。",
    "我觉得很孤独，没有人理解我。",
    "我已经写好了遗书，准备了安眠药。",
    "我想跳楼，这个念头越来越强烈。",
    "我控制不住想打人，昨天把室友推倒了。",
    "我会掐自己、撞墙，让自己清醒一点。",
    "我没有想过伤害自己，只是最近比较累。",
    "我们下周同一时间再见，这一周你可以试着记录一下自己的情绪。",
    "抑郁、焦虑、自杀、自伤、暴力、无风险、轻度、中度、重度、困扰。",
    "学生、学校、大学、中学、老师、同学、宿舍、食堂、社团、实习、论文、答辩。",
)

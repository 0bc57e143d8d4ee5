package org.psyedge

import org.json.JSONObject
import java.util.regex.Matcher
import java.util.regex.Pattern
import java.util.regex.PatternSyntaxException

/** One surviving lexicon hit: risk class, entry id and span (UTF-16 offsets into the folded text). */
data class LexiconHit(val riskFlag: String, val entry: String, val start: Int, val end: Int)

/**
 * The risk lexicon safety net, mirroring `psyedge.lexicon.Lexicon.scan/risk` on the compiled
 * lexicon that `tools/gen_assets.py` exports (fold table, entry regexes, context rules).
 *
 * Python `re` patterns are read by `java.util.regex` with UNICODE_CHARACTER_CLASS so `\s`/`\d`
 * mean what they mean in Python. Rule windows are counted in code points as Python counts them.
 * The host tests compare `risk()` with the SDK on fixture texts and on the PsySUICIDE texts.
 */
class RiskLexicon private constructor(
    val version: String,
    private val severity: List<String>,
    private val clauseBreak: Pattern,
    private val fold: Map<Int, Int>,
    private val entries: List<Entry>,
    private val rules: List<Rule>,
) {
    private class Entry(val id: String, val riskFlag: String, val regex: Pattern)

    private class Rule(
        val name: String,
        val kind: String,
        val appliesTo: Set<String>,
        val regex: Pattern,
        val objectMarkers: String,
        val selfRegex: Pattern?,
        val window: Int,
    )

    /** The most severe flag among the hits that survive the context rules, "none" if none. */
    fun risk(text: String): String = riskOf(scan(text))

    /** The most severe flag among `hits` ("none" for no hits), as `psyedge.contract.most_severe`. */
    fun riskOf(hits: List<LexiconHit>): String {
        val flags = hits.map { it.riskFlag }.toSet()
        return severity.firstOrNull { it in flags } ?: "none"
    }

    /**
     * Hits that survive the context rules, in text order. A hit strictly inside a longer surviving
     * hit is dropped whatever its class (`psyedge.lexicon.Lexicon.scan`: "你们全部去死" is violence,
     * not the "去死" inside it).
     */
    fun scan(text: String): List<LexiconHit> {
        val folded = foldText(text)
        val hits = ArrayList<Pair<LexiconHit, Int>>()
        for (entry in entries) {
            val m = entry.regex.matcher(folded)
            while (m.find()) {
                if (m.end() == m.start()) continue
                if (suppressed(folded, m.start(), m.end(), entry.riskFlag)) continue
                hits.add(LexiconHit(entry.riskFlag, entry.id, m.start(), m.end()) to severity.indexOf(entry.riskFlag))
            }
        }
        val sorted = hits.sortedWith(compareBy({ it.first.start }, { it.first.end }, { it.second })).map { it.first }
        return sorted.filter { h ->
            sorted.none { o -> o.start <= h.start && h.end <= o.end && (o.end - o.start) > (h.end - h.start) }
        }
    }

    private fun foldText(text: String): String {
        val sb = StringBuilder(text.length)
        var i = 0
        while (i < text.length) {
            val cp = text.codePointAt(i)
            sb.appendCodePoint(fold[cp] ?: cp)
            i += Character.charCount(cp)
        }
        return sb.toString()
    }

    private fun clauseStart(text: String, pos: Int): Int {
        var start = 0
        val m = clauseBreak.matcher(text.substring(0, pos))
        while (m.find()) start = m.end()
        return start
    }

    private fun suppressed(text: String, start: Int, end: Int, flag: String): Boolean {
        val clause = clauseStart(text, start)
        for (rule in rules) {
            if (flag !in rule.appliesTo) continue
            if (rule.kind == "after") {
                val m = rule.regex.matcher(text).region(end, text.length)
                m.useTransparentBounds(true).useAnchoringBounds(false)
                if (m.lookingAt()) return true
                continue
            }
            // Python: text[max(clause_start, start - window):start], counted in code points.
            val back = backCodePoints(text, start, rule.window)
            val before = text.substring(maxOf(clause, back), start)
            if (rule.kind == "before") {
                if (rule.regex.matcher(before).find()) return true
            } else if (otherSubject(before, rule)) {
                return true
            }
        }
        return false
    }

    /** The UTF-16 index `n` code points before `index` (0 when the text is shorter). */
    private fun backCodePoints(text: String, index: Int, n: Int): Int {
        var i = index
        var left = n
        while (left > 0 && i > 0) {
            i -= Character.charCount(text.codePointBefore(i))
            left--
        }
        return i
    }

    /** `psyedge.lexicon._other_subject`: is the nearest subject before the hit another person? */
    private fun otherSubject(before: String, rule: Rule): Boolean {
        var lastOther = -1
        val m: Matcher = rule.regex.matcher(before)
        while (m.find()) {
            val marker = if (m.start() > 0) before[m.start() - 1] else null
            if (marker != null && rule.objectMarkers.indexOf(marker) >= 0) continue
            lastOther = m.end()
        }
        if (lastOther < 0) return false
        var lastSelf = -1
        rule.selfRegex?.matcher(before)?.let { s -> while (s.find()) lastSelf = s.end() }
        return lastOther > lastSelf
    }

    companion object {
        private const val FLAGS = Pattern.UNICODE_CHARACTER_CLASS

        private fun compile(where: String, source: String): Pattern = try {
            Pattern.compile(source, FLAGS)
        } catch (e: PatternSyntaxException) {
            throw AssetException("risk_lexicon.json: $where: pattern '$source' does not compile on the JVM (${e.description})", e)
        }

        /** Parse the compiled lexicon document written by `tools/gen_assets.py`. */
        fun parse(o: JSONObject): RiskLexicon {
            val foldObj = o.getJSONObject("fold")
            val fold = foldObj.keys().asSequence().associate { k -> k.codePointAt(0) to foldObj.getString(k).codePointAt(0) }
            val entries = o.getJSONArray("entries").objects().map { e ->
                Entry(e.getString("id"), e.getString("class"), compile("entry ${e.getString("id")}", e.getString("pattern")))
            }
            val rules = o.getJSONArray("rules").objects().map { r ->
                val name = r.getString("name")
                Rule(
                    name, r.getString("kind"), r.getJSONArray("applies_to").strings().toSet(),
                    compile("rule $name", r.getString("pattern")), r.getString("object_markers"),
                    if (r.isNull("self_pattern")) null else compile("rule $name self_pattern", r.getString("self_pattern")),
                    r.getInt("window"),
                )
            }
            return RiskLexicon(
                o.getString("version"), o.getJSONArray("severity").strings(),
                compile("clause_break", o.getString("clause_break")), fold, entries, rules,
            )
        }
    }
}

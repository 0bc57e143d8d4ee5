package org.psyedge

import org.junit.Assert.assertTrue
import org.junit.Test

/** The Kotlin lexicon gives the SDK's verdict and hits on fixture texts and every PsySUICIDE text. */
class LexiconParityTest {
    private val lexicon = Golden.contract.lexicon

    @Test
    fun verdictsAndHitsMatchTheSdk() {
        val rows = Golden.jsonl("lexicon.jsonl")
        assertTrue("too few lexicon golden rows (${rows.size})", rows.size >= 20)
        val bad = ArrayList<String>()
        var risky = 0
        for (r in rows) {
            val text = r.getString("text")
            val want = r.getString("risk")
            val got = lexicon.risk(text)
            if (want != "none") risky++
            val hits = lexicon.scan(text).map { listOf(it.riskFlag, it.entry, Golden.cp(text, it.start), Golden.cp(text, it.end)) }
            val wantHits = r.getJSONArray("hits").let { a ->
                (0 until a.length()).map { i -> a.getJSONArray(i).let { h -> listOf(h.getString(0), h.getString(1), h.getInt(2), h.getInt(3)) } }
            }
            if (got != want || hits != wantHits) bad.add("'${text.take(60)}': kotlin $got $hits, python $want $wantHits")
        }
        assertTrue("${bad.size} of ${rows.size} texts differ:\n" + bad.take(10).joinToString("\n"), bad.isEmpty())
        assertTrue("the golden set has only $risky risky texts", risky >= 5)
    }

    @Test
    fun explicitRiskIsFound() {
        assertTrue(lexicon.risk("我不想活了") == "suicidal")
        assertTrue(lexicon.risk("今天天气不错") == "none")
    }
}

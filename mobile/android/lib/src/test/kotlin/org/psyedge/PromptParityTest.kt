package org.psyedge

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** Prompts rendered in Kotlin are byte-identical to `psyedge.prompt.render` for every fixture and template. */
class PromptParityTest {
    private val builder = PromptBuilder(Golden.contract.prompt)
    private val rows = Golden.jsonl("prompts.jsonl")

    @Test
    fun renderedPromptsAreByteIdentical() {
        val valid = rows.filter { !it.has("error") }
        assertTrue("too few golden prompts (${valid.size})", valid.size >= 40)
        val bad = ArrayList<String>()
        for (r in valid) {
            val conv = Golden.conversation(r.getJSONArray("conversation"))
            val tpl = builder.template(r.getString("template"))
            val got = builder.render(conv, tpl)
            val want = r.getString("prompt")
            if (!got.toByteArray(Charsets.UTF_8).contentEquals(want.toByteArray(Charsets.UTF_8))) {
                val at = got.zip(want).indexOfFirst { (a, b) -> a != b }.let { if (it < 0) minOf(got.length, want.length) else it }
                bad.add("${r.getString("id")}/${r.getString("template")}: differs at char $at: " +
                    "kotlin '${got.substring(maxOf(0, at - 10), minOf(got.length, at + 10))}' python '${want.substring(maxOf(0, at - 10), minOf(want.length, at + 10))}'")
            }
            val prepared = builder.prepare(conv)
            if (prepared.trimmed != r.getBoolean("trimmed") || prepared.turns.size != r.getInt("kept_turns")) {
                bad.add("${r.getString("id")}: trimmed=${prepared.trimmed} kept=${prepared.turns.size}, python ${r.getBoolean("trimmed")} ${r.getInt("kept_turns")}")
            }
        }
        assertTrue(bad.joinToString("\n"), bad.isEmpty())
    }

    @Test
    fun refusedConversationsAreRefused() {
        val invalid = rows.filter { it.has("error") }
        assertTrue("expected the 5 refused fixtures, got ${invalid.size}", invalid.size >= 5)
        for (r in invalid) {
            val conv = Golden.conversation(r.getJSONArray("conversation"))
            try {
                builder.render(conv, builder.template("chatml"))
                throw AssertionError("${r.getString("id")}: Kotlin accepted what Python refused (${r.getString("message")})")
            } catch (e: InputException) {
                val py = r.getString("message")
                // Same first words ("turn 0: text is empty", "conversation has no user turn ...").
                assertEquals("${r.getString("id")}: '${e.message}' vs python '$py'", py.substringBefore(":"), e.message!!.substringBefore(":"))
            }
        }
    }

    @Test
    fun normaliseIsIdempotentAndKeepsCodePoints() {
        val samples = rows.filter { !it.has("error") }.flatMap { Golden.conversation(it.getJSONArray("conversation")) }.map { it.text }
        for (s in samples) {
            val once = builder.normalise(s)
            assertEquals(once, builder.normalise(once))
        }
        // 2,000 code points kept from an emoji-heavy turn, not 2,000 UTF-16 units.
        val long = "😭".repeat(2500)
        val kept = builder.trim(listOf(Turn.user(long))).turns.single().text
        assertEquals(2000, kept.codePointCount(0, kept.length))
    }

    @Test
    fun unknownTemplateIsAnInputError() {
        try {
            builder.template("llama3")
            throw AssertionError("unknown template accepted")
        } catch (e: InputException) {
            assertTrue(e.message!!.contains("chatml"))
        }
    }
}

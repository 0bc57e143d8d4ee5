package org.psyedge

import org.json.JSONArray
import org.json.JSONObject
import org.json.JSONTokener
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The org.json validator agrees with `psyedge.contract.validate` on valid and invalid label objects. */
class LabelSchemaTest {
    private val schema = Golden.contract.schema

    @Test
    fun verdictsMatchTheSdk() {
        val rows = Golden.jsonl("schema.jsonl")
        assertTrue(rows.size >= 10)
        for (r in rows) {
            val value = JSONTokener(JSONObject().put("v", r.get("value")).toString()).nextValue().let { (it as JSONObject).opt("v") }
            val problems = schema.problems(value)
            assertEquals("value ${r.get("value")}: kotlin $problems, python '${r.getString("message")}'", r.getBoolean("valid"), problems.isEmpty())
        }
    }

    @Test
    fun everyProblemIsReported() {
        val obj = JSONObject("{\"depression_level\":true,\"anxiety_level\":7,\"risk_flag\":\"maybe\",\"x\":1}")
        val problems = schema.problems(obj)
        assertEquals(problems.toString(), 5, problems.size)  // missing score, extra x, bool, 7, maybe
        try {
            Labels.fromJson(obj, schema)
            throw AssertionError("invalid labels accepted")
        } catch (e: LabelException) {
            assertTrue(e.message!!.contains("risk_flag"))
        }
    }

    @Test
    fun canonicalJsonRoundTrips() {
        val l = Labels(2, 1, "none", 5)
        assertEquals("{\"depression_level\":2,\"anxiety_level\":1,\"risk_flag\":\"none\",\"student_distress_score\":5}", l.toJson())
        assertEquals(l, Labels.fromJson(JSONObject(l.toJson()), schema))
        assertEquals(listOf(0, 1, 2, 3), schema.allowedValues("anxiety_level"))
        assertTrue(schema.problems(JSONArray()).isNotEmpty())
    }
}

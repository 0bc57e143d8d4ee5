package org.psyedge

import org.json.JSONObject
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import kotlin.math.abs

/**
 * `assess` on the JVM (JNI + llama.h) returns the labels of the Python SDK's Screener for the same
 * conversations, model, template, context and thread count, replayed in the same order so the KV
 * prefix cache is in the same state: labels, risk source, trimming and token counts identical,
 * probabilities within [TOLERANCE] (same libllama.so, so only summation order can differ).
 */
class ParityTest {
    private fun replay(name: String) {
        val models = Golden.models()
        if (!models.has(name)) {
            val msg = "no golden for model '$name' (gen_golden.py skipped it; see its log)"
            if (System.getenv("CI") == "true") throw AssertionError("$msg; CI requires it")
            assumeTrue(msg, false)
        }
        val spec = models.getJSONObject(name)
        val template = if (spec.isNull("template")) null else spec.getString("template")
        val rows = Golden.jsonl("parity-$name.jsonl")
        assertTrue("empty golden for $name", rows.isNotEmpty())
        val bad = ArrayList<String>()
        var maxDiff = 0.0
        var ktMs = 0.0
        var pyMs = 0.0
        var ktPrefill = 0.0
        var pyPrefill = 0.0
        val adapter = spec.optString("adapter").ifEmpty { null }  // a LoRA adapter GGUF on the model
        PsyEdge.load(
            spec.getString("path"), spec.getInt("threads"), Golden.assets, template, spec.getInt("n_ctx"),
            adapterPath = adapter,
        ).use { psy ->
            var session: Session? = null
            for (r in rows) {
                val id = r.getString("id")
                val want = r.getJSONObject("result")
                val conversation = Golden.conversation(r.getJSONArray("conversation"))
                val a = if (id.startsWith("session-")) {  // one growing Session, as gen_golden.py does
                    val s = session ?: psy.session().also { session = it }
                    for (turn in conversation.drop(s.conversation.size)) s.add(turn)
                    s.assessBlocking()
                } else {
                    psy.assessBlocking(conversation)
                }
                val labels = JSONObject(a.labels.toJson())
                val wl = want.getJSONObject("labels")
                for (f in Golden.contract.plan.fields) {
                    if (labels.get(f).toString() != wl.get(f).toString()) bad.add("$id: $f kotlin ${labels.get(f)} python ${wl.get(f)}")
                }
                if (a.riskSource.wire != want.getString("risk_source")) bad.add("$id: risk_source ${a.riskSource.wire} vs ${want.getString("risk_source")}")
                if (a.modelRiskFlag != want.getString("model_risk_flag")) bad.add("$id: model flag ${a.modelRiskFlag} vs ${want.getString("model_risk_flag")}")
                if (a.trimmed != want.getBoolean("trimmed")) bad.add("$id: trimmed ${a.trimmed} vs ${want.getBoolean("trimmed")}")
                val wp = want.getJSONObject("probabilities")
                for ((field, values) in a.probabilities) {
                    val sum = values.values.sum()
                    if (abs(sum - 1.0) > 1e-9) bad.add("$id: $field probabilities sum to $sum")
                    for ((v, p) in values) {
                        val d = abs(p - wp.getJSONObject(field).getDouble(v))
                        maxDiff = maxOf(maxDiff, d)
                        if (d > TOLERANCE) bad.add("$id: P($field=$v) kotlin $p python ${wp.getJSONObject(field).getDouble(v)}")
                    }
                }
                val wt = want.getJSONObject("timings")
                val counts = mapOf(
                    "prompt_tokens" to a.timings.promptTokens, "cached_tokens" to a.timings.cachedTokens,
                    "new_tokens" to a.timings.newTokens, "decode_calls" to a.timings.decodeCalls,
                    "guess_misses" to a.timings.guessMisses,
                )
                for ((k, v) in counts) if (v != wt.getInt(k)) bad.add("$id: $k kotlin $v python ${wt.getInt(k)}")
                val hits = a.lexiconHits.map { listOf(it.riskFlag, it.entry) }
                val wh = want.getJSONArray("lexicon_hits").let { h -> (0 until h.length()).map { listOf(h.getJSONArray(it).getString(0), h.getJSONArray(it).getString(1)) } }
                if (hits != wh) bad.add("$id: lexicon hits $hits vs $wh")
                if (a.timings.totalMs <= 0.0) bad.add("$id: no timing")
                ktMs += a.timings.totalMs
                pyMs += wt.getDouble("total_ms")
                ktPrefill += a.timings.prefillMs
                pyPrefill += wt.getDouble("prefill_ms")
            }
        }
        println(
            "     parity $name: ${rows.size} assessments, max |dp| = %.2e; mean total %.0f ms (python %.0f), prefill %.0f ms (python %.0f)"
                .format(maxDiff, ktMs / rows.size, pyMs / rows.size, ktPrefill / rows.size, pyPrefill / rows.size),
        )
        assertTrue("${bad.size} differences on $name:\n" + bad.take(15).joinToString("\n"), bad.isEmpty())
    }

    @Test fun tinyChatml() = replay("tiny")
    @Test fun tinySharedFirstTokens() = replay("tiny-shared")
    @Test fun tinySmallContextFit() = replay("tiny-ctx")
    @Test fun gemma3_270m_q4_k_m() = replay("gemma")

    companion object {
        /** Absolute tolerance on each probability. */
        const val TOLERANCE = 1e-6
    }
}

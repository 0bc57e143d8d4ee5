package org.psyedge

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.io.IOException

/** The committed assets load, agree with each other, and match what the SDK generates now. */
class AssetsTest {
    @Test
    fun committedAssetsMatchTheSdk() {
        val committed = Golden.assetsDir.listFiles()!!.filter { it.isFile }.associate { it.name to it.readText() }
        val fresh = Golden.genAssetsDir.listFiles()!!.filter { it.isFile }.associate { it.name to it.readText() }
        assertEquals("asset files differ from the SDK's: run `make -C mobile/android assets`", fresh.keys, committed.keys)
        val stale = fresh.filter { (name, text) -> committed[name] != text }.keys
        assertTrue("stale assets $stale: the SDK changed; run `make -C mobile/android assets` and commit", stale.isEmpty())
    }

    @Test
    fun committedSourcesMatchTheTable() {
        // result_stats.h and NativeStat.kt, rendered from tools/result_stats.py into build/gen-sources.
        val fresh = Golden.genSourcesDir.walkTopDown().filter { it.isFile }.toList()
        assertTrue("no generated sources in ${Golden.genSourcesDir}", fresh.size >= 2)
        val stale = fresh.map { it.relativeTo(Golden.genSourcesDir).path }
            .filter { rel -> File(Golden.rootDir, rel).let { !it.isFile || it.readText() != File(Golden.genSourcesDir, rel).readText() } }
        assertTrue("stale generated sources $stale: run `make -C mobile/android assets` and commit", stale.isEmpty())
    }

    @Test
    fun statsSlotsAreTheTableOrder() {
        val names = NativeStat.entries.map { it.wire }
        assertEquals(NativeBridge.STATS, names.size)
        assertEquals(listOf("tokenize_ms", "total_ms", "guess_misses"), listOf(names[0], names[3], names.last()))
        val stats = DoubleArray(NativeBridge.STATS) { it.toDouble() }
        assertEquals(10.0, stats[NativeStat.GUESS_MISSES], 0.0)
    }

    @Test
    fun contractLoadsWithThePlanOfTheSchema() {
        val c = Golden.contract
        assertEquals(listOf("depression_level", "anxiety_level", "risk_flag", "student_distress_score"), c.plan.fields)
        assertEquals(c.schema.fields, c.plan.fields)
        assertEquals(listOf("none", "suicidal", "self_harm", "violence"), c.plan.choices[2].values)
        assertEquals((0..9).map { it.toString() }, c.plan.choices[3].values)
        val forced = c.plan.steps.filterIsInstance<PlanStep.Forced>().map { it.text }
        assertEquals("{\"depression_level\":", forced.first())
        assertEquals("}", forced.last())
        // Filling the plan with chosen values gives the canonical JSON of those labels.
        val text = c.plan.steps.joinToString("") { s ->
            when (s) {
                is PlanStep.Forced -> s.text
                is PlanStep.Choice -> s.values[1]
            }
        }
        assertEquals(Labels(1, 1, "suicidal", 1).toJson(), text)
        assertEquals(setOf("deepseek-r1", "chatml", "raw"), c.prompt.templates.keys)
        assertEquals(12, c.prompt.maxTurns)
        assertEquals(2000, c.prompt.maxChars)
        assertTrue(c.grammar.startsWith("root ::= "))
        assertTrue(c.lexicon.version.isNotEmpty())
        assertEquals(4096, c.decoding.nCtx)
        assertTrue(c.decoding.answerSlack in 0..256)
    }

    @Test
    fun missingOrBrokenAssetsFailWithTheFix() {
        val good = Golden.assets
        val missing = AssetSource { name -> if (name == "plan.json") throw IOException("gone") else good.read(name) }
        expectAsset("plan.json is missing", missing)
        val broken = AssetSource { name -> if (name == "prompt.json") "{not json" else good.read(name) }
        expectAsset("prompt.json is not valid JSON", broken)
        val otherVersion = AssetSource { name ->
            if (name == "plan.json") good.read(name).replace("\"contract_version\": \"", "\"contract_version\": \"9") else good.read(name)
        }
        expectAsset("different SDK versions", otherVersion)
        val badRegex = AssetSource { name ->
            if (name == "risk_lexicon.json") good.read(name).replaceFirst("\"pattern\": \"", "\"pattern\": \"(") else good.read(name)
        }
        expectAsset("does not compile", badRegex)
    }

    private fun expectAsset(fragment: String, source: AssetSource) {
        try {
            Contract.load(source)
            fail("expected AssetException mentioning '$fragment'")
        } catch (e: AssetException) {
            assertTrue("message '${e.message}' lacks '$fragment'", e.message!!.contains(fragment))
            assertTrue("message '${e.message}' lacks the fix", e.message!!.contains("gen_assets.py") || fragment == "does not compile")
        }
    }

    @Test
    fun directoryAssetsReadFiles() {
        val dir = File(Golden.assetsDir, "plan.json")
        assertTrue(DirectoryAssets(Golden.assetsDir).read("plan.json") == dir.readText())
    }
}

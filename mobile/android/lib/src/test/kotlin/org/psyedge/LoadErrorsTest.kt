package org.psyedge

import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

/** Clear exceptions for missing, broken and incompatible models and for bad input; one native thread. */
class LoadErrorsTest {
    private val models = File(Golden.goldenDir, "models")
    private val tiny = File(models, "tiny-chatml.gguf").path

    private inline fun <reified E : Throwable> expect(fragment: String, block: () -> Unit) {
        try {
            block()
        } catch (e: Throwable) {
            assertTrue("expected ${E::class.simpleName}, got $e", e is E)
            assertTrue("message '${e.message}' lacks '$fragment'", e.message!!.contains(fragment))
            return
        }
        throw AssertionError("expected ${E::class.simpleName} mentioning '$fragment'")
    }

    @Test
    fun missingModelFile() = expect<ModelException>("model file not found") {
        PsyEdge.load("/nonexistent/model.gguf", 1, Golden.assets)
    }

    @Test
    fun notAGguf() {
        val junk = File.createTempFile("junk", ".gguf").apply { writeText("this is not a model"); deleteOnExit() }
        expect<ModelException>("could not load") { PsyEdge.load(junk.path, 1, Golden.assets) }
    }

    @Test
    fun missingOrForeignAdapter() {
        expect<ModelException>("adapter file not found") {
            PsyEdge.load(tiny, 1, Golden.assets, adapterPath = "/nonexistent/adapter.gguf")
        }
        // A model file is not an adapter: llama.cpp refuses it (general.type is "model").
        expect<ModelException>("could not load the adapter") {
            PsyEdge.load(tiny, 1, Golden.assets, adapterPath = tiny)
        }
    }

    @Test
    fun otherContractIsRefused() = expect<ModelException>("contract 0.9") {
        PsyEdge.load(File(models, "tiny-contract-0.9.gguf").path, 1, Golden.assets)
    }

    @Test
    fun noTemplateMetadataNeedsTemplate() {
        val bare = File(models, "tiny-no-metadata.gguf").path
        expect<ModelException>("psyedge.template") { PsyEdge.load(bare, 1, Golden.assets) }
        PsyEdge.load(bare, 1, Golden.assets, template = "chatml").use { assertEquals("chatml", it.template.name) }
    }

    @Test
    fun badArguments() {
        expect<InputException>("threads") { PsyEdge.load(tiny, 0, Golden.assets) }
        expect<InputException>("unknown chat template") { PsyEdge.load(tiny, 1, Golden.assets, template = "llama3") }
    }

    @Test
    fun badConversationsAndClosedInstance() {
        val psy = PsyEdge.load(tiny, Golden.threads, Golden.assets)
        assertEquals("chatml", psy.template.name)
        assertEquals("1.0", psy.metadata["contract_version"])
        expect<InputException>("no user turn") { psy.assessBlocking(emptyList()) }
        expect<InputException>("role must be one of") { psy.assessBlocking(listOf(Turn("system", "hi"))) }
        expect<InputException>("text is empty") { psy.assessBlocking(listOf(Turn.user(" \n "))) }
        val a = psy.assessBlocking(listOf(Turn.user("我想自杀")))
        assertEquals("suicidal", a.labels.riskFlag)  // the lexicon raises whatever the random model says
        psy.close()
        psy.close()  // idempotent
        expect<IllegalStateException>("closed") { psy.assessBlocking(listOf(Turn.user("你好"))) }
    }

    @Test
    fun concurrentCallsQueueOnOneNativeThread() {
        PsyEdge.load(tiny, Golden.threads, Golden.assets).use { psy ->
            val convs = listOf("我最近压力很大", "考试没考好", "室友吵架", "我好累").map { listOf(Turn.user(it)) }
            val sequential = convs.map { psy.assessBlocking(it).labels }
            val parallel = runBlocking { convs.map { async(kotlinx.coroutines.Dispatchers.Default) { psy.assess(it) } }.awaitAll() }
            assertEquals(sequential, parallel.map { it.labels })
        }
    }

    @Test
    fun sessionChecksTurnsWhenAddedAndDecodesOnlyNewTurns() {
        PsyEdge.load(tiny, Golden.threads, Golden.assets).use { psy ->
            val s = psy.session()
            expect<InputException>("no turns yet") { s.assessBlocking() }
            s.add(Turn.user("老师，我最近总是失眠。"))
            expect<InputException>("turn 1: role must be one of") { s.add(Turn("system", "hi")) }
            expect<InputException>("turn 1: text is empty") { s.add("assistant", " ") }
            assertEquals(1, s.conversation.size)  // refused turns are not kept
            val first = s.assessBlocking()
            s.add(Turn.assistant("失眠多久了？"))
            s.add(Turn.user("快一个月了，白天上课也没精神。"))
            val second = s.assessBlocking()
            // The first turn's tokens stay cached: only the new turns (and the answer) are decoded.
            assertTrue(second.timings.cachedTokens > psy.prefixTokens)
            assertTrue(second.timings.cachedTokens >= first.timings.promptTokens - 16)
            assertEquals(second.timings.promptTokens - second.timings.cachedTokens, second.timings.newTokens)
        }
    }

    @Test
    fun aContextLlamaCppRoundsUpNeverTakesABatchBeyondNBatch() {
        // llama.cpp rounds nCtx=260 up to 512 but keeps n_batch at 260: sizing prompts by the rounded
        // context sent a 500-token batch and aborted the process (GGML_ASSERT n_tokens_all <= n_batch).
        PsyEdge.load(tiny, Golden.threads, Golden.assets, nCtx = 260).use { psy ->
            assertEquals(260, psy.nCtx)
            val a = psy.assessBlocking(listOf(Turn.user("老师，我最近压力很大，晚上睡不着觉。".repeat(40))))
            assertTrue(a.trimmed && a.timings.promptTokens <= 260)
        }
    }
}

package org.psyedge

import kotlinx.coroutines.ExecutorCoroutineDispatcher
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import org.json.JSONObject
import java.io.Closeable
import java.io.File
import java.util.concurrent.Executors

/**
 * On-device screening of a conversation into the four psyedge labels with a GGUF model.
 *
 * ```
 * val psy = PsyEdge.load(modelPath, threads = 4, assets = AndroidAssets(context))
 * val a = psy.assess(listOf(Turn.user("我最近压力很大"), Turn.assistant("能说说吗？")))
 * psy.close()
 * ```
 *
 * Every native call runs on one dedicated thread (llama.cpp contexts are not thread-safe), so
 * [assess] may be called from any coroutine; calls queue. The decoding is the Python SDK's
 * jump-forward algorithm (sdk/python/DECODING.md) in C++; the prompt, the lexicon safety net and
 * the schema check are done here from the generated assets.
 */
class PsyEdge private constructor(
    private val handle: Long,
    private val dispatcher: ExecutorCoroutineDispatcher,
    val contract: Contract,
    /** The chat template in use (argument, else the GGUF's `psyedge.template`). */
    val template: ChatTemplate,
    /** The model's psyedge metadata (`psyedge.*` GGUF keys; empty strings when absent). */
    val metadata: Map<String, String>,
    /** Context size in tokens and the cached instruction prefix length. */
    val nCtx: Int,
    val prefixTokens: Int,
    val loadMs: Double,
) : Closeable {
    private val prompt = PromptBuilder(contract.prompt)
    private val choices = contract.plan.choices
    private val nValues = choices.sumOf { it.values.size }
    private val lines = contract.prompt.lines
    @Volatile private var closed = false

    /** Screen one conversation (suspends on the native thread; safe to call from the main thread). */
    suspend fun assess(conversation: List<Turn>): Assessment {
        check(!closed) { "this PsyEdge is closed" }
        val turns = prompt.check(conversation)  // InputException before any native work
        val prepared = prompt.trim(turns)
        return withContext(dispatcher) { assessNative(turns, prepared) }
    }

    /** Blocking variant for callers without coroutines (tests, Java). Do not call on the UI thread. */
    fun assessBlocking(conversation: List<Turn>): Assessment = runBlocking { assess(conversation) }

    /** A conversation that grows turn by turn; its [Session.assess] decodes only the new turns. */
    fun session(): Session = Session(this)

    /** Check a conversation as [assess] would (InputException on bad roles or empty text). */
    internal fun check(conversation: List<Turn>): List<Turn> = prompt.check(conversation)

    /** The exact prompt text the model sees for `conversation` (before the context fit). */
    fun render(conversation: List<Turn>): String = prompt.render(conversation, template)

    private fun assessNative(turns: List<Turn>, prepared: PreparedConversation): Assessment {
        check(!closed) { "this PsyEdge is closed" }
        val kept = prepared.turns
        val heads = Array(kept.size) { lines.getValue(kept[it].role).first.toByteArray(Charsets.UTF_8) }
        val texts = Array(kept.size) { kept[it].text.toByteArray(Charsets.UTF_8) }
        val tails = Array(kept.size) { lines.getValue(kept[it].role).second.toByteArray(Charsets.UTF_8) }
        val choice = IntArray(choices.size)
        val probs = DoubleArray(nValues)
        val stats = DoubleArray(NativeBridge.STATS)
        NativeBridge.nativeAssess(handle, heads, texts, tails, choice, probs, stats)?.let {
            // Python raises InputError for a conversation that cannot fit the context; so do we.
            throw if (it.startsWith(NativeBridge.INPUT_ERROR)) InputException(it.removePrefix(NativeBridge.INPUT_ERROR))
            else ModelException(it)
        }

        val t0 = System.nanoTime()
        val obj = JSONObject()
        val probabilities = LinkedHashMap<String, Map<String, Double>>()
        var at = 0
        choices.forEachIndexed { f, step ->
            val allowed = contract.schema.allowedValues(step.field)
            obj.put(step.field, allowed[choice[f]])
            probabilities[step.field] = step.values.withIndex().associate { (i, v) -> v to probs[at + i] }
            at += step.values.size
        }
        val modelFlag = obj.getString("risk_flag")
        // DECODING.md 5: every user turn of the whole conversation (before trimming), joined by "\n".
        val userText = turns.filter { it.role == "user" }.joinToString("\n") { it.text }
        val hits = contract.lexicon.scan(userText)
        val lexFlag = contract.lexicon.riskOf(hits)
        var source = RiskSource.MODEL
        if (mostSevere(modelFlag, lexFlag) != modelFlag) {
            obj.put("risk_flag", lexFlag)
            source = RiskSource.LEXICON
        }
        val labels = Labels.fromJson(obj, contract.schema)
        val lexMs = (System.nanoTime() - t0) / 1e6
        val timings = Timings(
            tokenizeMs = stats[NativeStat.TOKENIZE_MS], prefillMs = stats[NativeStat.PREFILL_MS],
            decodeMs = stats[NativeStat.DECODE_MS], lexiconMs = lexMs, totalMs = stats[NativeStat.TOTAL_MS] + lexMs,
            decodeCalls = stats[NativeStat.DECODE_CALLS].toInt(), promptTokens = stats[NativeStat.PROMPT_TOKENS].toInt(),
            cachedTokens = stats[NativeStat.CACHED_TOKENS].toInt(), newTokens = stats[NativeStat.NEW_TOKENS].toInt(),
            guessMisses = stats[NativeStat.GUESS_MISSES].toInt(),
        )
        val cut = stats[NativeStat.CUT] != 0.0
        return Assessment(labels, probabilities, source, modelFlag, timings, prepared.trimmed || cut, hits)
    }

    private fun mostSevere(a: String, b: String): String {
        val order = contract.prompt.riskSeverity
        return if (order.indexOf(a) <= order.indexOf(b)) a else b
    }

    /** Free the model and context; idempotent. Waits for a running assessment to finish. */
    override fun close() {
        if (closed) return
        closed = true
        try {
            runBlocking(dispatcher) { NativeBridge.nativeClose(handle) }
        } finally {
            dispatcher.close()
        }
    }

    companion object {
        /**
         * Load a GGUF model and prepare it for screening.
         *
         * @param modelPath a .gguf file readable by this process (on Android: app storage, not a content URI)
         * @param threads CPU threads for llama.cpp (the SDK default is min(4, cores))
         * @param assets where the generated contract files live (`AndroidAssets(context)` on a phone)
         * @param template chat template name; null uses the model's `psyedge.template` metadata
         * @param nCtx context size in tokens; null: the Python SDK's default (`decoding.json`)
         * @param flashAttn flash attention; null: the SDK's default
         * @param adapterPath a LoRA adapter GGUF applied on the model at run time (the Python SDK's
         *   `adapter=`): the base keeps its 4-bit type, the fine-tune is not quantized
         * @throws ModelException missing, unloadable or incompatible model or adapter
         * @throws InputException bad arguments (threads < 1, unknown template)
         */
        fun load(
            modelPath: String,
            threads: Int,
            assets: AssetSource,
            template: String? = null,
            nCtx: Int? = null,
            flashAttn: Boolean? = null,
            adapterPath: String? = null,
        ): PsyEdge {
            if (threads < 1) throw InputException("threads must be at least 1, got $threads")
            if (nCtx != null && nCtx < 256) throw InputException("nCtx must be at least 256 tokens, got $nCtx")
            val contract = Contract.load(assets)
            val dec = contract.decoding
            val builder = PromptBuilder(contract.prompt)
            if (template != null) builder.template(template)  // unknown name: InputException before loading
            val file = File(modelPath)
            if (!file.isFile) throw ModelException("model file not found: $modelPath (pass the path of a .gguf file)")
            if (!file.canRead()) throw ModelException("model file $modelPath is not readable by this app")
            if (adapterPath != null && !File(adapterPath).isFile) {
                throw ModelException("adapter file not found: $adapterPath (make lora-gguf writes it)")
            }
            NativeBridge.ensureLoaded()

            val t0 = System.nanoTime()
            val dispatcher = Executors.newSingleThreadExecutor { r -> Thread(r, "psyedge-native").apply { isDaemon = true } }
                .asCoroutineDispatcher()
            val nSeqMax = 1 + contract.plan.choices.maxOf { it.values.size }
            val handle = LongArray(1)
            try {
                runBlocking(dispatcher) {
                    NativeBridge.nativeOpen(
                        file.path.toByteArray(Charsets.UTF_8), nCtx ?: dec.nCtx, threads, flashAttn ?: dec.flashAttn,
                        nSeqMax, dec.nUbatch, dec.answerSlack,
                        (adapterPath ?: "").toByteArray(Charsets.UTF_8), handle,
                    )
                }?.let { throw ModelException(it) }
            } catch (e: Throwable) {
                dispatcher.close()
                throw e
            }
            try {
                return runBlocking(dispatcher) { finishLoad(handle[0], dispatcher, contract, builder, template, modelPath, t0) }
            } catch (e: Throwable) {
                runBlocking(dispatcher) { NativeBridge.nativeClose(handle[0]) }
                dispatcher.close()
                throw e
            }
        }

        /** GGUF keys that tie a model to a contract (`psyedge.metadata.KEYS`). */
        private val META_KEYS = listOf("contract_version", "prompt_hash", "template", "base_model", "adapter_hash")

        private fun finishLoad(
            handle: Long, dispatcher: ExecutorCoroutineDispatcher, contract: Contract, builder: PromptBuilder,
            template: String?, modelPath: String, t0: Long,
        ): PsyEdge {
            val meta = META_KEYS.associateWith { key ->
                NativeBridge.nativeMeta(handle, "psyedge.$key".toByteArray(Charsets.UTF_8))?.toString(Charsets.UTF_8) ?: ""
            }
            val version = meta.getValue("contract_version")
            if (version.isNotEmpty() && version != contract.prompt.contractVersion) {
                throw ModelException(
                    "$modelPath was built for psyedge contract $version, this library speaks " +
                        "${contract.prompt.contractVersion}: use a matching psyedge version or re-export the model",
                )
            }
            val name = template ?: meta.getValue("template").ifEmpty {
                throw ModelException(
                    "$modelPath has no psyedge.template metadata: name the chat template, e.g. " +
                        "PsyEdge.load(path, threads, assets, template = \"raw\") (one of ${contract.prompt.templates.keys.sorted()})",
                )
            }
            val tpl = try {
                builder.template(name)
            } catch (e: InputException) {
                throw ModelException("$modelPath: ${e.message}")
            }
            val steps = contract.plan.steps
            val forced = steps.filterIsInstance<PlanStep.Forced>().map { it.text.toByteArray(Charsets.UTF_8) }.toTypedArray()
            val values = contract.plan.choices.map { c -> c.values.map { it.toByteArray(Charsets.UTF_8) }.toTypedArray() }
                .toTypedArray()
            val info = IntArray(2)
            NativeBridge.nativeSetPlan(
                handle, builder.head(tpl).toByteArray(Charsets.UTF_8), tpl.suffix.toByteArray(Charsets.UTF_8),
                forced, values, info,
            )?.let { throw ModelException(it) }
            val loadMs = (System.nanoTime() - t0) / 1e6
            return PsyEdge(handle, dispatcher, contract, tpl, meta, info[0], info[1], loadMs)
        }
    }
}

package org.psyedge

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject
import java.io.File
import java.io.IOException

/**
 * Where the generated contract files come from: the APK's assets on a phone, a folder on the
 * host JVM. One tiny interface keeps the loader free of Android classes, so the host tests run it.
 */
fun interface AssetSource {
    /** The UTF-8 text of asset `name` (e.g. "plan.json"); throws IOException when it is absent. */
    fun read(name: String): String
}

/** Assets read from a folder (the host tests, or a model folder that ships its own copy). */
class DirectoryAssets(private val dir: File) : AssetSource {
    override fun read(name: String): String = File(dir, name).readText(Charsets.UTF_8)
}

/** One chat template: the text around the user message and the answer's end marker. */
data class ChatTemplate(val name: String, val prefix: String, val suffix: String, val eos: String)

/** A step of the decode plan: fixed text the model is fed, or a choice among value texts. */
sealed class PlanStep {
    data class Forced(val text: String) : PlanStep()
    data class Choice(val field: String, val values: List<String>) : PlanStep()
}

/** The decode plan (`psyedge.plan.plan_document()`): the canonical output as forced text and holes. */
class DecodePlan(val contractVersion: String, val fields: List<String>, val steps: List<PlanStep>) {
    /** The choices in output order (one per field). */
    val choices: List<PlanStep.Choice> get() = steps.filterIsInstance<PlanStep.Choice>()
}

/** Everything that shapes the prompt (`psyedge.prompt`), read from `prompt.json`. */
class PromptSpec(
    val contractVersion: String,
    val promptHash: String,
    val instruction: String,
    val roles: Map<String, String>,
    /** Per role: the transcript line's text before and after the turn text ("来访者：", "\n"). */
    val lines: Map<String, Pair<String, String>>,
    val maxTurns: Int,
    val maxChars: Int,
    val templates: Map<String, ChatTemplate>,
    val riskSeverity: List<String>,
    val charsets: Map<String, CodePointSet>,
)

/** The Screener's decoding settings (`decoding.json`, from `psyedge.decode` / `psyedge.screener`). */
data class DecodingSpec(val nCtx: Int, val nUbatch: Int, val flashAttn: Boolean, val answerSlack: Int)

/**
 * The whole contract as shipped in `assets/psyedge/`: prompt spec, decode plan, label schema,
 * risk lexicon and the grammar text. Loaded once per [PsyEdge]; every field comes from the SDK.
 */
class Contract(
    val prompt: PromptSpec,
    val plan: DecodePlan,
    val schema: LabelSchema,
    val lexicon: RiskLexicon,
    val grammar: String,
    val decoding: DecodingSpec,
) {
    companion object {
        /** Asset format this code reads (`tools/gen_assets.py` ASSET_FORMAT). */
        const val ASSET_FORMAT = 1
        val FILES = listOf("prompt.json", "plan.json", "labels.schema.json", "risk_lexicon.json", "grammar.gbnf", "decoding.json")

        /** Load and cross-check every asset; an error names the file, the problem and the fix. */
        fun load(source: AssetSource): Contract {
            val texts = FILES.associateWith { name ->
                try {
                    source.read(name)
                } catch (e: IOException) {
                    throw AssetException("asset psyedge/$name is missing ($e): run tools/gen_assets.py", e)
                }
            }
            fun obj(name: String): JSONObject = try {
                JSONObject(texts.getValue(name))
            } catch (e: JSONException) {
                throw AssetException("asset psyedge/$name is not valid JSON (${e.message}): run tools/gen_assets.py", e)
            }
            val prompt = wrap("prompt.json") { parsePrompt(obj("prompt.json")) }
            val plan = wrap("plan.json") { parsePlan(obj("plan.json")) }
            val schema = wrap("labels.schema.json") { LabelSchema(texts.getValue("labels.schema.json")) }
            val lexicon = wrap("risk_lexicon.json") { RiskLexicon.parse(obj("risk_lexicon.json")) }
            val decoding = wrap("decoding.json") { parseDecoding(obj("decoding.json")) }
            if (plan.contractVersion != prompt.contractVersion) {
                throw AssetException(
                    "plan.json has contract ${plan.contractVersion} but prompt.json has ${prompt.contractVersion}: " +
                        "the assets come from different SDK versions; run tools/gen_assets.py",
                )
            }
            if (plan.fields != schema.fields) {
                throw AssetException("plan.json fields ${plan.fields} differ from the schema's ${schema.fields}: run tools/gen_assets.py")
            }
            for (choice in plan.choices) {
                val allowed = schema.allowedValues(choice.field).map { it.toString() }
                if (allowed != choice.values) {
                    throw AssetException(
                        "plan.json values ${choice.values} for ${choice.field} differ from the schema's $allowed: run tools/gen_assets.py",
                    )
                }
            }
            return Contract(prompt, plan, schema, lexicon, texts.getValue("grammar.gbnf"), decoding)
        }

        private fun <T> wrap(name: String, block: () -> T): T = try {
            block()
        } catch (e: AssetException) {
            throw e
        } catch (e: JSONException) {
            throw AssetException("asset psyedge/$name lacks a field (${e.message}): run tools/gen_assets.py", e)
        } catch (e: IllegalArgumentException) {
            throw AssetException("asset psyedge/$name is malformed (${e.message}): run tools/gen_assets.py", e)
        }

        private fun parsePrompt(o: JSONObject): PromptSpec {
            val format = o.getInt("asset_format")
            require(format == ASSET_FORMAT) { "asset_format $format, this library reads $ASSET_FORMAT" }
            val roles = o.getJSONObject("roles").let { r -> r.keys().asSequence().associateWith { r.getString(it) } }
            val ln = o.getJSONObject("lines")
            val lines = ln.keys().asSequence().associateWith { r ->
                ln.getJSONObject(r).let { it.getString("head") to it.getString("tail") }
            }
            require(lines.keys == roles.keys) { "lines ${lines.keys} and roles ${roles.keys} differ" }
            val tpl = o.getJSONObject("templates")
            val templates = tpl.keys().asSequence().associateWith { name ->
                val t = tpl.getJSONObject(name)
                ChatTemplate(name, t.getString("prefix"), t.getString("suffix"), t.getString("eos"))
            }
            val text = o.getJSONObject("text")
            val charsets = text.keys().asSequence().associateWith { CodePointSet.parse(text.getJSONArray(it).strings()) }
            return PromptSpec(
                o.getString("contract_version"), o.getString("prompt_hash"), o.getString("instruction"), roles, lines,
                o.getInt("max_turns"), o.getInt("max_chars"), templates, o.getJSONArray("risk_severity").strings(), charsets,
            )
        }

        private fun parseDecoding(o: JSONObject): DecodingSpec {
            val format = o.getInt("asset_format")
            require(format == ASSET_FORMAT) { "asset_format $format, this library reads $ASSET_FORMAT" }
            return DecodingSpec(o.getInt("n_ctx"), o.getInt("n_ubatch"), o.getBoolean("flash_attn"), o.getInt("answer_slack"))
        }

        private fun parsePlan(o: JSONObject): DecodePlan {
            val steps = o.getJSONArray("steps").objects().map { s ->
                if (s.has("forced")) PlanStep.Forced(s.getString("forced"))
                else PlanStep.Choice(s.getString("field"), s.getJSONArray("values").strings())
            }
            return DecodePlan(o.getString("contract_version"), o.getJSONArray("fields").strings(), steps)
        }
    }
}

/** A set of code points stored as sorted inclusive ranges (binary search: O(log n) per lookup). */
class CodePointSet(private val starts: IntArray, private val ends: IntArray) {
    operator fun contains(cp: Int): Boolean {
        var lo = 0
        var hi = starts.size - 1
        while (lo <= hi) {
            val mid = (lo + hi) ushr 1
            when {
                cp < starts[mid] -> hi = mid - 1
                cp > ends[mid] -> lo = mid + 1
                else -> return true
            }
        }
        return false
    }

    companion object {
        private val RANGE = Regex("U\\+([0-9A-F]{4,6})\\.\\.U\\+([0-9A-F]{4,6})")

        /** Parse "U+0009..U+000D" items as written by `gen_assets.codepoint_ranges`. */
        fun parse(items: List<String>): CodePointSet {
            val pairs = items.map { item ->
                val m = RANGE.matchEntire(item) ?: throw IllegalArgumentException("bad code point range '$item'")
                m.groupValues[1].toInt(16) to m.groupValues[2].toInt(16)
            }.sortedBy { it.first }
            return CodePointSet(pairs.map { it.first }.toIntArray(), pairs.map { it.second }.toIntArray())
        }
    }
}

internal fun JSONArray.strings(): List<String> = (0 until length()).map { getString(it) }
internal fun JSONArray.objects(): List<JSONObject> = (0 until length()).map { getJSONObject(it) }

package org.psyedge

import org.json.JSONObject

/** The four labels, schema-validated (construct through [Labels.fromJson] or [PsyEdge.assess]). */
data class Labels(
    val depressionLevel: Int,
    val anxietyLevel: Int,
    val riskFlag: String,
    val studentDistressScore: Int,
) {
    /** The canonical JSON text (keys in schema order, compact), as `psyedge.contract.canonical_json`. */
    fun toJson(): String =
        "{\"depression_level\":$depressionLevel,\"anxiety_level\":$anxietyLevel," +
            "\"risk_flag\":${JSONObject.quote(riskFlag)},\"student_distress_score\":$studentDistressScore}"

    companion object {
        /** Parse and validate against the label schema; throws [LabelException] listing every problem. */
        fun fromJson(obj: JSONObject, schema: LabelSchema): Labels {
            schema.validate(obj)
            return Labels(
                obj.getInt("depression_level"), obj.getInt("anxiety_level"),
                obj.getString("risk_flag"), obj.getInt("student_distress_score"),
            )
        }
    }
}

/** Where the final `risk_flag` came from: the model's choice, or the lexicon raising it. */
enum class RiskSource(val wire: String) { MODEL("model"), LEXICON("lexicon") }

/** Wall-clock and token counts of one assessment (milliseconds unless named otherwise). */
data class Timings(
    val tokenizeMs: Double,
    val prefillMs: Double,
    val decodeMs: Double,
    val lexiconMs: Double,
    val totalMs: Double,
    val decodeCalls: Int,
    val promptTokens: Int,
    val cachedTokens: Int,
    val newTokens: Int,
    /** Values the model chose differently from the guessed answer (DECODING.md 4); each costs one call. */
    val guessMisses: Int,
)

/**
 * One screening result, the same fields as the Python SDK's `Assessment.to_dict()`:
 * `probabilities[field][valueText]` sums to 1 per field and always holds the model's
 * distribution (also for `risk_flag` when the lexicon raised it).
 */
data class Assessment(
    val labels: Labels,
    val probabilities: Map<String, Map<String, Double>>,
    val riskSource: RiskSource,
    val modelRiskFlag: String,
    val timings: Timings,
    val trimmed: Boolean,
    val lexiconHits: List<LexiconHit>,
) {
    /** True when the conversation shows any risk: show the crisis banner. */
    val hasRisk: Boolean get() = labels.riskFlag != "none"
}

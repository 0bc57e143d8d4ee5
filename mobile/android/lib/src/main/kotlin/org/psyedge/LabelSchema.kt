package org.psyedge

import org.json.JSONArray
import org.json.JSONObject

/**
 * The label JSON Schema (`labels.schema.json`, generated from `psyedge.contract.LABEL_SCHEMA`)
 * and a validator for the keywords it uses, on `org.json` (which Android ships).
 *
 * Only the keywords the contract uses are implemented: `type` (object/integer/string),
 * `properties`, `required`, `additionalProperties: false`, `enum`. Loading a schema with any
 * other validation keyword fails, so a contract change cannot be silently half-checked here.
 * Like `psyedge.contract.validate`, booleans are never integers, and every problem is reported.
 */
class LabelSchema(text: String) {
    private val schema = JSONObject(text)
    /** Field names in canonical (schema) order. */
    val fields: List<String>
    private val properties: JSONObject = schema.getJSONObject("properties")
    private val required: List<String> = schema.optJSONArray("required")?.strings() ?: emptyList()
    private val closed: Boolean = schema.has("additionalProperties") && !schema.getBoolean("additionalProperties")

    init {
        checkKeywords("<root>", schema, ROOT_KEYWORDS)
        require(schema.getString("type") == "object") { "the label schema must describe an object" }
        // org.json keeps no key order; the canonical order is the order of the raw text.
        fields = orderedKeys(text, properties)
        for (f in fields) checkKeywords(f, properties.getJSONObject(f), FIELD_KEYWORDS)
    }

    /** The values `field` may take, in schema order (Int for levels, String for risk). */
    fun allowedValues(field: String): List<Any> {
        val p = properties.optJSONObject(field) ?: throw LabelException("unknown label field '$field'; expected one of $fields")
        val e = p.getJSONArray("enum")
        return (0 until e.length()).map { e.get(it) }
    }

    /** Return the list of problems with `obj` (empty when valid), each prefixed by its JSON path. */
    fun problems(obj: Any?): List<String> {
        if (obj !is JSONObject) return listOf("<root>: ${describe(obj)} is not of type 'object'")
        val out = ArrayList<String>()
        for (key in required) if (!obj.has(key)) out.add("<root>: '$key' is a required property")
        if (closed) {
            val extra = obj.keys().asSequence().filter { !properties.has(it) }.sorted().toList()
            if (extra.isNotEmpty()) out.add("<root>: additional properties are not allowed ($extra)")
        }
        for (field in fields) {
            if (!obj.has(field)) continue
            val value = obj.get(field)
            val p = properties.getJSONObject(field)
            when (p.getString("type")) {
                "integer" -> if (value is Boolean || !isInteger(value)) {
                    out.add("$field: ${describe(value)} is not of type 'integer'")
                    continue
                }
                "string" -> if (value !is String) {
                    out.add("$field: ${describe(value)} is not of type 'string'")
                    continue
                }
            }
            if (p.has("enum") && allowedValues(field).none { sameValue(it, value) }) {
                out.add("$field: ${describe(value)} is not one of ${allowedValues(field)}")
            }
        }
        return out
    }

    /** Validate or throw [LabelException] listing every problem (the SDK's `validate`). */
    fun validate(obj: Any?): JSONObject {
        val errs = problems(obj)
        if (errs.isNotEmpty()) throw LabelException("labels do not match the schema: " + errs.joinToString("; "))
        return obj as JSONObject
    }

    private fun isInteger(v: Any?): Boolean = when (v) {
        is Int, is Long -> true
        is Double -> v == Math.floor(v) && !v.isInfinite()
        else -> false
    }

    private fun sameValue(allowed: Any, v: Any?): Boolean = when {
        v is Boolean -> false
        allowed is Number && v is Number -> allowed.toDouble() == v.toDouble()
        else -> allowed == v
    }

    private fun describe(v: Any?): String = when (v) {
        null, JSONObject.NULL -> "null"
        is String -> "'$v'"
        is JSONArray -> "an array"
        is JSONObject -> "an object"
        else -> v.toString()
    }

    private companion object {
        val ANNOTATIONS = setOf("\$schema", "\$id", "title", "description")
        val ROOT_KEYWORDS = ANNOTATIONS + setOf("type", "properties", "required", "additionalProperties")
        val FIELD_KEYWORDS = ANNOTATIONS + setOf("type", "enum")

        fun checkKeywords(where: String, o: JSONObject, known: Set<String>) {
            val unknown = o.keys().asSequence().filter { it !in known }.toList()
            require(unknown.isEmpty()) { "schema $where uses keywords $unknown this validator does not implement" }
        }

        /** Property names in their textual order (org.json's JSONObject is a hash map). */
        fun orderedKeys(text: String, properties: JSONObject): List<String> {
            val names = properties.keys().asSequence().toList()
            val body = text.substring(text.indexOf("\"properties\""))
            return names.sortedBy { body.indexOf("\"$it\"") }
        }
    }
}

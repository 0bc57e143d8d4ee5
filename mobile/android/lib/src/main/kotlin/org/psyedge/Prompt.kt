package org.psyedge

import java.text.Normalizer

/** One turn of a conversation: role "user" (the student) or "assistant" (the counselor). */
data class Turn(val role: String, val text: String) {
    companion object {
        fun user(text: String) = Turn("user", text)
        fun assistant(text: String) = Turn("assistant", text)
    }
}

/** A checked and trimmed conversation plus whether older turns were dropped. */
data class PreparedConversation(val turns: List<Turn>, val trimmed: Boolean)

/**
 * Builds the exact prompt text the model sees, mirroring `psyedge.prompt` step by step
 * (`normalise_text`, `check_conversation`, `trim`, `transcript`, `render`). The character sets,
 * limits, role names, instruction and templates all come from `prompt.json`; the host tests
 * compare the result byte for byte with prompts rendered by the Python SDK.
 *
 * Lengths are counted in Unicode code points, as Python's `len` does (a Kotlin `String.length`
 * counts UTF-16 units and would trim an emoji-heavy turn differently).
 */
class PromptBuilder(private val spec: PromptSpec) {
    private val invisible = charset("invisible")
    private val spaces = charset("spaces")
    private val blankLineSpace = charset("blank_line_space")
    private val strip = charset("strip")

    private fun charset(name: String): CodePointSet =
        spec.charsets[name] ?: throw AssetException("prompt.json lacks text.$name: run tools/gen_assets.py")

    /** `psyedge.prompt.normalise_text`: NFC, invisibles removed, spaces collapsed, lines stripped, blank lines squeezed. */
    fun normalise(text: String): String {
        var t = text.replace("\r\n", "\n").replace("\r", "\n")
        t = Normalizer.normalize(t, Normalizer.Form.NFC)
        t = mapCodePoints(t) { cp, out -> if (cp !in invisible) out.appendCodePoint(cp) }
        t = collapseSpaces(t)
        t = t.split("\n").joinToString("\n") { stripSpace(it) }
        t = squeezeBlankLines(t)
        return stripSpace(t)
    }

    /** `psyedge.prompt.check_conversation`: refuse unusable input, return normalised turns. */
    fun check(conversation: List<Turn>): List<Turn> {
        val out = ArrayList<Turn>(conversation.size)
        conversation.forEachIndexed { i, turn ->
            if (turn.role !in spec.roles) {
                throw InputException("turn $i: role must be one of ${spec.roles.keys.toList()}, got '${turn.role}'")
            }
            if (stripSpace(turn.text).isEmpty()) throw InputException("turn $i: text is empty")
            val clean = normalise(turn.text)
            if (clean.isNotEmpty()) out.add(Turn(turn.role, clean))
        }
        if (out.none { it.role == "user" }) {
            throw InputException("conversation has no user turn with visible text: nothing to assess")
        }
        return out
    }

    /** `psyedge.prompt.trim`: keep the newest turns within the turn and character limits. */
    fun trim(turns: List<Turn>): PreparedConversation {
        val kept = ArrayList<Turn>()
        var chars = 0
        var cut = false
        for (turn in turns.asReversed()) {
            if (kept.size == spec.maxTurns) {
                cut = true
                break
            }
            val len = turn.text.codePointCount(0, turn.text.length)
            if (chars + len > spec.maxChars) {
                if (kept.isEmpty()) {
                    val from = turn.text.offsetByCodePoints(0, len - spec.maxChars)
                    kept.add(Turn(turn.role, turn.text.substring(from)))
                }
                cut = true
                break
            }
            kept.add(turn)
            chars += len
        }
        kept.reverse()
        return PreparedConversation(kept, cut)
    }

    /** `psyedge.prompt.prepare`: check, then trim. */
    fun prepare(conversation: List<Turn>): PreparedConversation = trim(check(conversation))

    /** `psyedge.prompt.transcript`: one "role：text" line per turn. */
    fun transcript(turns: List<Turn>): String = buildString {
        for (t in turns) {
            val (head, tail) = spec.lines.getValue(t.role)
            append(head).append(t.text).append(tail)
        }
    }

    fun template(name: String): ChatTemplate = spec.templates[name]
        ?: throw InputException("unknown chat template '$name'; expected one of ${spec.templates.keys.sorted()}")

    /** The constant head of every prompt for `template` (prefix + instruction): cached in the KV cache. */
    fun head(template: ChatTemplate): String = template.prefix + spec.instruction

    /** `psyedge.prompt.render`: the exact prompt text (BOS is added by the tokenizer). */
    fun render(conversation: List<Turn>, template: ChatTemplate): String =
        head(template) + transcript(prepare(conversation).turns) + template.suffix

    private inline fun mapCodePoints(s: String, f: (Int, StringBuilder) -> Unit): String {
        val sb = StringBuilder(s.length)
        var i = 0
        while (i < s.length) {
            val cp = s.codePointAt(i)
            f(cp, sb)
            i += Character.charCount(cp)
        }
        return sb.toString()
    }

    private fun collapseSpaces(s: String): String {
        var inRun = false
        return mapCodePoints(s) { cp, out ->
            if (cp in spaces) {
                if (!inRun) out.append(' ')
                inRun = true
            } else {
                out.appendCodePoint(cp)
                inRun = false
            }
        }
    }

    /** Python's `str.strip()`: drop leading and trailing Unicode whitespace. */
    private fun stripSpace(s: String): String {
        var start = 0
        while (start < s.length) {
            val cp = s.codePointAt(start)
            if (cp !in strip) break
            start += Character.charCount(cp)
        }
        var end = s.length
        while (end > start) {
            val cp = s.codePointBefore(end)
            if (cp !in strip) break
            end -= Character.charCount(cp)
        }
        return s.substring(start, end)
    }

    /**
     * Python's `re.sub(r"\n\s*\n+", "\n", text)`: from a newline, the greedy `\s*` runs over all
     * following whitespace and backs off to the last newline in that run; a run that holds no
     * second newline is no match, and the scan moves on by one character.
     */
    private fun squeezeBlankLines(s: String): String {
        val sb = StringBuilder(s.length)
        var i = 0
        while (i < s.length) {
            if (s[i] == '\n') {
                var j = i + 1
                var lastNl = -1
                while (j < s.length) {
                    val cp = s.codePointAt(j)
                    if (cp != '\n'.code && cp !in blankLineSpace) break
                    if (cp == '\n'.code) lastNl = j
                    j += Character.charCount(cp)
                }
                if (lastNl >= 0) {
                    sb.append('\n')
                    i = lastNl + 1
                    continue
                }
            }
            sb.append(s[i])
            i++
        }
        return sb.toString()
    }
}

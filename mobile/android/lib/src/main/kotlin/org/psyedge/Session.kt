package org.psyedge

/**
 * An incremental conversation on a [PsyEdge], the Python SDK's `Session`: [add] turns as they
 * happen, [assess] at any time. The native side keeps the last conversation's KV cache and its
 * answer as the next guess (sdk/python/DECODING.md 3-4), so an assessment after one more turn
 * decodes only that turn, the template suffix and the answer, usually in one call.
 *
 * Not thread-safe on its own: add turns from one coroutine (assessments queue on the native thread).
 */
class Session internal constructor(private val psy: PsyEdge) {
    private val turns = ArrayList<Turn>()

    /** The turns added so far, oldest first. */
    val conversation: List<Turn> get() = turns.toList()

    /** Append one turn; checked now (role, non-empty text), so an error points at this call. */
    fun add(turn: Turn) {
        psy.check(turns + turn)  // InputException names the turn's index in the session
        turns.add(turn)
    }

    fun add(role: String, text: String) = add(Turn(role, text))

    /** Screen the conversation so far. */
    suspend fun assess(): Assessment {
        if (turns.isEmpty()) throw InputException("the session has no turns yet: add() a user turn first")
        return psy.assess(turns.toList())
    }

    /** Blocking variant of [assess] (tests, Java); not on the UI thread. */
    fun assessBlocking(): Assessment = kotlinx.coroutines.runBlocking { assess() }
}

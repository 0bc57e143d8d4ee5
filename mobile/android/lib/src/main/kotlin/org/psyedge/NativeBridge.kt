package org.psyedge

/**
 * The JNI surface (lib/src/main/cpp/psyedge_jni.cpp): a handful of primitive calls. Text goes in
 * as UTF-8 bytes, results come back in out-arrays, and each call returns null or an error message
 * that [PsyEdge] turns into a typed exception. Call only from PsyEdge's single native thread.
 */
internal object NativeBridge {
    @Volatile private var loaded = false

    /** Load libpsyedge_jni (from the APK on a phone, from -Djava.library.path on the host). */
    @Synchronized
    fun ensureLoaded() {
        if (loaded) return
        try {
            System.loadLibrary("psyedge_jni")
        } catch (e: UnsatisfiedLinkError) {
            throw ModelException(
                "the native library psyedge_jni could not be loaded (${e.message}): on a phone the APK lacks " +
                    "the ABI of this device; on the host pass -Djava.library.path=<build/jni>",
                e,
            )
        }
        loaded = true
    }

    /** Prefix of a [nativeAssess] error that is the conversation's fault, not the model's. */
    const val INPUT_ERROR = "input: "

    /** Length of [nativeAssess]'s statistics array: one slot per [NativeStat]. */
    val STATS = NativeStat.entries.size

    @JvmStatic external fun nativeOpen(
        path: ByteArray, nCtx: Int, threads: Int, flashAttn: Boolean, nSeqMax: Int, nUbatch: Int, answerSlack: Int,
        adapter: ByteArray, handleOut: LongArray,
    ): String?

    @JvmStatic external fun nativeMeta(handle: Long, key: ByteArray): ByteArray?

    @JvmStatic external fun nativeSetPlan(
        handle: Long, head: ByteArray, suffix: ByteArray, forced: Array<ByteArray>, values: Array<Array<ByteArray>>,
        infoOut: IntArray,
    ): String?

    @JvmStatic external fun nativeAssess(
        handle: Long, heads: Array<ByteArray>, texts: Array<ByteArray>, tails: Array<ByteArray>,
        choiceOut: IntArray, probsOut: DoubleArray, statsOut: DoubleArray,
    ): String?

    @JvmStatic external fun nativeClose(handle: Long)
}

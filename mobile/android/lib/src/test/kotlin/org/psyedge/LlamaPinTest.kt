package org.psyedge

import org.junit.Assert.assertEquals
import org.junit.Test
import java.io.File

/**
 * The llama.cpp commit the Android build pins (LLAMA_CPP_PIN) is the one the installed
 * llama-cpp-python vendors, i.e. the one these host tests ran: a bump of either fails here.
 */
class LlamaPinTest {
    @Test
    fun pinMatchesTheInstalledLlamaCppPython() {
        val root = File(System.getProperty("psyedge.root") ?: error("psyedge.root not set: run `make host-test`"))
        val headers = File(System.getProperty("psyedge.headers") ?: error("psyedge.headers not set: run `make host-test`"))
        val pin = File(root, "LLAMA_CPP_PIN").readLines().filter { !it.startsWith("#") && it.isNotBlank() }
            .associate { it.substringBefore(' ') to it.substringAfter(' ').trim() }
        val version = File(headers, "VERSION").readText().trim()
        val commit = File(headers, "LLAMA_CPP_COMMIT").readText().trim()
        val fix = "update mobile/android/LLAMA_CPP_PIN and the submodule to the commit llama-cpp-python $version vendors ($commit)"
        assertEquals(fix, version, pin["llama-cpp-python"])
        assertEquals(fix, commit, pin["llama.cpp"])
    }
}

package org.psyedge

import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File

/**
 * The demo app's manifest and layouts link with aapt2 against android-framework-res (Makefile
 * `aapt2-link`), and every `R.<type>.<name>` the app's Kotlin code uses exists in the R.java aapt2
 * generated: a renamed view id or string fails here, without an Android SDK.
 */
class AppResourcesTest {
    private val marker = File(System.getProperty("psyedge.aapt2") ?: error("psyedge.aapt2 not set: run `make host-test`"))

    @Test
    fun appResourcesLinkWithAapt2() {
        val log = File(marker.parentFile, "aapt2.log")
        assertTrue("aapt2 could not link app/src/main (manifest or layouts): ${if (log.exists()) log.readText() else "no log"}", marker.exists())
    }

    @Test
    fun everyResourceTheAppUsesExists() {
        val root = File(System.getProperty("psyedge.root") ?: error("psyedge.root not set: run `make host-test`"))
        val rJava = File(marker.parentFile, "aapt2/gen/org/psyedge/demo/R.java")
        assertTrue("no R.java: aapt2 link failed", rJava.isFile)
        val declared = HashSet<String>()
        var type = ""
        for (line in rJava.readLines()) {
            Regex("class (\\w+) \\{").find(line)?.let { type = it.groupValues[1] }
            Regex("int (\\w+)=").find(line)?.let { declared.add("$type.${it.groupValues[1]}") }
        }
        val used = File(root, "app/src/main/kotlin").walk().filter { it.extension == "kt" }
            .flatMap { f -> Regex("\\bR\\.(\\w+)\\.(\\w+)").findAll(f.readText()).map { "${it.groupValues[1]}.${it.groupValues[2]}" } }
            .toSet()
        assertTrue("the app uses no resources? ($used)", used.size >= 10)
        val missing = used - declared
        assertTrue("the app uses resources aapt2 did not generate: $missing", missing.isEmpty())
    }
}

package org.psyedge

import org.junit.runner.Description
import org.junit.runner.JUnitCore
import org.junit.runner.notification.Failure
import org.junit.runner.notification.RunListener
import kotlin.system.exitProcess

/** Every host test class, in run order (cheap checks first, model parity last). */
val HOST_TESTS: List<Class<*>> = listOf(
    AssetsTest::class.java,
    LlamaPinTest::class.java,
    PromptParityTest::class.java,
    LexiconParityTest::class.java,
    LabelSchemaTest::class.java,
    AppResourcesTest::class.java,
    LoadErrorsTest::class.java,
    ParityTest::class.java,
)

/**
 * Runs the JUnit 4 host tests and ends with the line `N passed, N failed` (what `make test`
 * greps for); exits non-zero when anything failed, so the Makefile target fails with it.
 */
fun main() {
    val core = JUnitCore()
    var passed = 0
    var failed = 0
    var skipped = 0
    core.addListener(object : RunListener() {
        private val failedNow = HashSet<Description>()
        private val skippedNow = HashSet<Description>()
        private var started = 0L
        override fun testStarted(d: Description) { started = System.nanoTime() }
        override fun testFailure(f: Failure) {
            failedNow.add(f.description)
            println("FAIL ${f.description.displayName}\n     ${f.message?.take(4000)}")
            if (f.exception !is AssertionError) f.exception.printStackTrace(System.out)
        }
        override fun testAssumptionFailure(f: Failure) {
            skippedNow.add(f.description)
            println("SKIP ${f.description.displayName}: ${f.message}")
        }
        override fun testFinished(d: Description) {
            val ms = (System.nanoTime() - started) / 1_000_000
            if (d in failedNow) failed++ else if (d in skippedNow) skipped++ else {
                passed++
                println("PASS ${d.displayName} (${ms} ms)")
            }
        }
    })
    val t0 = System.nanoTime()
    core.run(*HOST_TESTS.toTypedArray())
    println("host tests took %.1f s".format((System.nanoTime() - t0) / 1e9))
    if (skipped > 0) println("$skipped skipped")
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}

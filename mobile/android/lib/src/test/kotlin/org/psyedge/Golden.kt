package org.psyedge

import org.json.JSONArray
import org.json.JSONObject
import java.io.File

/**
 * Paths the Makefile passes as system properties, and readers for the golden files that
 * tools/gen_golden.py writes with the Python SDK.
 */
object Golden {
    private fun dir(prop: String): File {
        val path = System.getProperty(prop) ?: error("system property $prop is not set: run the tests with `make host-test`")
        return File(path).also { require(it.isDirectory) { "$prop=$path is not a folder: run `make host-test`" } }
    }

    val assetsDir: File get() = dir("psyedge.assets")
    val genAssetsDir: File get() = dir("psyedge.genAssets")
    val genSourcesDir: File get() = dir("psyedge.genSources")
    /** mobile/android/, where the generated sources are committed. */
    val rootDir: File get() = dir("psyedge.root")
    val goldenDir: File get() = dir("psyedge.golden")
    val threads: Int get() = System.getProperty("psyedge.threads", "2").toInt()

    val assets: AssetSource get() = DirectoryAssets(assetsDir)
    val contract: Contract by lazy { Contract.load(DirectoryAssets(assetsDir)) }

    fun jsonl(name: String): List<JSONObject> =
        File(goldenDir, name).readLines(Charsets.UTF_8).filter { it.isNotBlank() }.map { JSONObject(it) }

    fun models(): JSONObject = JSONObject(File(goldenDir, "models.json").readText(Charsets.UTF_8))

    fun conversation(a: JSONArray): List<Turn> =
        (0 until a.length()).map { a.getJSONObject(it).let { t -> Turn(t.getString("role"), t.getString("text")) } }

    /** Python's str index (code points) of a UTF-16 index into `s`. */
    fun cp(s: String, utf16: Int): Int = s.codePointCount(0, utf16)
}

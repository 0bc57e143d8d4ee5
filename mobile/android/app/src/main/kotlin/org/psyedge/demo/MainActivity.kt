package org.psyedge.demo

import android.app.Activity
import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.provider.OpenableColumns
import android.view.View
import android.widget.Button
import android.widget.EditText
import android.widget.TextView
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.MainScope
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.psyedge.Assessment
import org.psyedge.Contract
import org.psyedge.ModelException
import org.psyedge.PsyEdge
import org.psyedge.PsyEdgeException
import org.psyedge.Turn
import org.psyedge.android.AndroidAssets
import org.psyedge.android.load
import java.io.File

/**
 * The demo: pick a GGUF with the system file picker (copied into app storage, since llama.cpp
 * needs a real file path), type a conversation turn by turn, and see the four labels, the
 * per-value probabilities and the latency; any risk flag shows a red crisis banner with hotlines.
 * Platform widgets only. All model work runs on PsyEdge's own native thread.
 */
class MainActivity : Activity() {
    private val scope = MainScope()
    private var psy: PsyEdge? = null
    private val turns = ArrayList<Turn>()
    /** Role display names from the contract assets ("来访者", "咨询师"). */
    private val roleNames by lazy { Contract.load(AndroidAssets(this)).prompt.roles }

    private lateinit var banner: TextView
    private lateinit var modelStatus: TextView
    private lateinit var transcript: TextView
    private lateinit var input: EditText
    private lateinit var assessButton: Button
    private lateinit var labels: TextView
    private lateinit var probabilities: TextView
    private lateinit var latency: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        banner = findViewById(R.id.crisis_banner)
        modelStatus = findViewById(R.id.model_status)
        transcript = findViewById(R.id.transcript)
        input = findViewById(R.id.turn_input)
        assessButton = findViewById(R.id.assess)
        labels = findViewById(R.id.labels)
        probabilities = findViewById(R.id.probabilities)
        latency = findViewById(R.id.latency)

        findViewById<Button>(R.id.pick_model).setOnClickListener { pickModel() }
        findViewById<Button>(R.id.add_user).setOnClickListener { addTurn("user") }
        findViewById<Button>(R.id.add_assistant).setOnClickListener { addTurn("assistant") }
        findViewById<Button>(R.id.clear).setOnClickListener { clear() }
        assessButton.setOnClickListener { assess() }

        // Reload the model picked last time (it lives in app storage).
        modelFile().takeIf { it.isFile }?.let { loadModel(it) }
    }

    override fun onDestroy() {
        scope.cancel()
        // close() waits for a running assessment: do it off the main thread (no ANR on exit).
        psy?.let { p -> Thread({ p.close() }, "psyedge-close").start() }
        psy = null
        super.onDestroy()
    }

    private fun modelFile(): File = File(File(filesDir, "models"), "model.gguf")

    @Deprecated("platform API; the demo avoids AndroidX on purpose")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        val uri = data?.data
        if (requestCode == PICK_MODEL && resultCode == RESULT_OK && uri != null) importModel(uri)
    }

    @Suppress("DEPRECATION")
    private fun pickModel() {
        val intent = Intent(Intent.ACTION_OPEN_DOCUMENT).addCategory(Intent.CATEGORY_OPENABLE).setType("*/*")
        startActivityForResult(intent, PICK_MODEL)
    }

    private fun importModel(uri: Uri) {
        modelStatus.setText(R.string.loading_model)
        scope.launch {
            try {
                val dest = modelFile()
                withContext(Dispatchers.IO) {
                    dest.parentFile?.mkdirs()
                    val tmp = File(dest.path + ".part")
                    contentResolver.openInputStream(uri).use { src ->
                        requireNotNull(src) { "cannot open ${displayName(uri)}" }
                        tmp.outputStream().use { src.copyTo(it, 1 shl 20) }
                    }
                    check(tmp.renameTo(dest)) { "cannot move the model into app storage" }
                }
                loadModel(dest)
            } catch (e: Exception) {
                modelStatus.text = getString(R.string.model_failed, e.message ?: e.toString())
            }
        }
    }

    private fun displayName(uri: Uri): String =
        contentResolver.query(uri, arrayOf(OpenableColumns.DISPLAY_NAME), null, null, null)?.use { c ->
            if (c.moveToFirst()) c.getString(0) else null
        } ?: uri.toString()

    private fun loadModel(file: File) {
        modelStatus.setText(R.string.loading_model)
        assessButton.isEnabled = false
        scope.launch {
            val old = psy
            psy = null
            try {
                val threads = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)
                val loaded = withContext(Dispatchers.IO) {
                    old?.close()
                    try {
                        PsyEdge.load(this@MainActivity, file.path, threads)
                    } catch (e: ModelException) {
                        // A base model without psyedge metadata (e.g. Gemma-3-270M): no chat markers.
                        if (e.message?.contains("psyedge.template") == true) {
                            PsyEdge.load(this@MainActivity, file.path, threads, template = "raw")
                        } else {
                            throw e
                        }
                    }
                }
                psy = loaded
                modelStatus.text = getString(R.string.model_loaded, file.name, loaded.template.name, loaded.loadMs)
                assessButton.isEnabled = true
            } catch (e: PsyEdgeException) {
                modelStatus.text = getString(R.string.model_failed, e.message)
            }
        }
    }

    private fun addTurn(role: String) {
        val text = input.text.toString()
        if (text.isBlank()) return
        turns.add(Turn(role, text))
        input.setText("")
        renderTranscript()
    }

    private fun clear() {
        turns.clear()
        renderTranscript()
        labels.text = ""
        probabilities.text = ""
        latency.text = ""
        banner.visibility = View.GONE
    }

    private fun renderTranscript() {
        transcript.text = if (turns.isEmpty()) {
            getString(R.string.empty_transcript)
        } else {
            turns.joinToString("\n") { (roleNames[it.role] ?: it.role) + "：" + it.text }
        }
    }

    private fun assess() {
        val model = psy ?: return
        labels.setText(R.string.assessing)
        assessButton.isEnabled = false
        scope.launch {
            try {
                show(model.assess(ArrayList(turns)))
            } catch (e: PsyEdgeException) {
                labels.text = getString(R.string.assess_failed, e.message)
            } finally {
                assessButton.isEnabled = true
            }
        }
    }

    private fun show(a: Assessment) {
        val l = a.labels
        labels.text = getString(
            R.string.result, l.depressionLevel, l.anxietyLevel, l.riskFlag, a.riskSource.wire, l.studentDistressScore,
        )
        probabilities.text = a.probabilities.entries.joinToString("\n") { (field, values) ->
            field + ": " + values.entries.joinToString("  ") { (v, p) -> "%s=%.2f".format(v, p) }
        }
        latency.text = getString(
            R.string.latency, a.timings.totalMs, a.timings.prefillMs, a.timings.decodeMs, a.timings.newTokens,
        )
        if (a.hasRisk) {
            banner.text = getString(R.string.crisis_banner, l.riskFlag)
            banner.visibility = View.VISIBLE
        } else {
            banner.visibility = View.GONE
        }
    }

    private companion object {
        const val PICK_MODEL = 1
    }
}

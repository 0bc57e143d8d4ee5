package org.psyedge

/**
 * The library's exception tree, the same three kinds as the Python SDK (`psyedge.errors`), so a
 * caller can tell "fix your input" from "fix your model file" from "a bug: the answer is invalid".
 */
open class PsyEdgeException(message: String, cause: Throwable? = null) : Exception(message, cause)

/** The conversation or an argument cannot be used (wrong role, empty text, no user turn). */
class InputException(message: String) : PsyEdgeException(message)

/** The model file is missing, unreadable, not a GGUF llama.cpp can load, or trained on another contract. */
class ModelException(message: String, cause: Throwable? = null) : PsyEdgeException(message, cause)

/** A label object does not match the label schema (never expected from the constrained decoder). */
class LabelException(message: String) : PsyEdgeException(message)

/** The shipped assets are missing or malformed: regenerate them with `tools/gen_assets.py`. */
class AssetException(message: String, cause: Throwable? = null) : PsyEdgeException(message, cause)

// Thin JNI glue between org.psyedge.NativeBridge and psyedge::Engine.
//
// Text crosses as UTF-8 byte arrays (never GetStringUTFChars: its "modified UTF-8" garbles emoji);
// results come back through primitive out-arrays; every function returns null on success or an
// error message, which the Kotlin side turns into a typed exception. No global model state: each
// handle owns its model and context. Kotlin calls all of these from one thread.
#include <jni.h>

#include <mutex>
#include <string>
#include <vector>

#include "engine.h"
#include "result_stats.h"

#ifdef __ANDROID__
#include <android/log.h>
#endif

namespace {

std::string bytes(JNIEnv * env, jbyteArray a) {
    if (!a) return {};
    const jsize n = env->GetArrayLength(a);
    std::string s(static_cast<size_t>(n), '\0');
    env->GetByteArrayRegion(a, 0, n, reinterpret_cast<jbyte *>(s.data()));
    return s;
}

std::vector<std::string> byte_list(JNIEnv * env, jobjectArray a) {
    std::vector<std::string> out;
    if (!a) return out;
    const jsize n = env->GetArrayLength(a);
    for (jsize i = 0; i < n; ++i) {
        auto item = static_cast<jbyteArray>(env->GetObjectArrayElement(a, i));
        out.push_back(bytes(env, item));
        env->DeleteLocalRef(item);
    }
    return out;
}

jstring message(JNIEnv * env, const std::string & msg) { return env->NewStringUTF(msg.c_str()); }

psyedge::Engine * engine(jlong h) { return reinterpret_cast<psyedge::Engine *>(h); }

// llama.cpp logs a lot at load; keep warnings and errors only (logcat on Android, stderr on host).
// GGML_LOG_LEVEL_CONT continues the previous message, so it inherits that message's level.
ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

void log_callback(enum ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_CONT) level = g_last_level;
    g_last_level = level;
    if (level < GGML_LOG_LEVEL_WARN) return;
#ifdef __ANDROID__
    __android_log_print(level >= GGML_LOG_LEVEL_ERROR ? ANDROID_LOG_ERROR : ANDROID_LOG_WARN, "psyedge", "%s", text);
#else
    fputs(text, stderr);
#endif
}

std::once_flag g_backend;

}  // namespace

extern "C" {

JNIEXPORT jstring JNICALL Java_org_psyedge_NativeBridge_nativeOpen(JNIEnv * env, jclass, jbyteArray path, jint n_ctx,
                                                                   jint threads, jboolean flash_attn, jint n_seq_max,
                                                                   jint n_ubatch, jint answer_slack,
                                                                   jbyteArray adapter, jlongArray handle_out) {
    std::call_once(g_backend, [] {
        llama_log_set(log_callback, nullptr);
        llama_backend_init();
    });
    psyedge::EngineConfig cfg;
    cfg.n_ctx = n_ctx;
    cfg.n_threads = threads;
    cfg.flash_attn = flash_attn;
    cfg.n_seq_max = n_seq_max;
    cfg.n_ubatch = n_ubatch;
    cfg.answer_slack = answer_slack;
    cfg.adapter = bytes(env, adapter);  // empty: no adapter
    auto * e = new psyedge::Engine(bytes(env, path), cfg);
    if (!e->ok()) {
        std::string err = e->error();
        delete e;
        return message(env, err);
    }
    jlong h = reinterpret_cast<jlong>(e);
    env->SetLongArrayRegion(handle_out, 0, 1, &h);
    return nullptr;
}

JNIEXPORT jbyteArray JNICALL Java_org_psyedge_NativeBridge_nativeMeta(JNIEnv * env, jclass, jlong h, jbyteArray key) {
    std::string value;
    if (!engine(h)->meta(bytes(env, key), value)) return nullptr;
    jbyteArray out = env->NewByteArray(static_cast<jsize>(value.size()));
    env->SetByteArrayRegion(out, 0, static_cast<jsize>(value.size()), reinterpret_cast<const jbyte *>(value.data()));
    return out;
}

JNIEXPORT jstring JNICALL Java_org_psyedge_NativeBridge_nativeSetPlan(JNIEnv * env, jclass, jlong h, jbyteArray head,
                                                                      jbyteArray suffix, jobjectArray forced,
                                                                      jobjectArray values, jintArray info_out) {
    psyedge::PlanText plan;
    plan.head = bytes(env, head);
    plan.suffix = bytes(env, suffix);
    plan.forced = byte_list(env, forced);
    const jsize n = env->GetArrayLength(values);
    for (jsize i = 0; i < n; ++i) {
        auto field = static_cast<jobjectArray>(env->GetObjectArrayElement(values, i));
        plan.values.push_back(byte_list(env, field));
        env->DeleteLocalRef(field);
    }
    if (!engine(h)->set_plan(plan)) return message(env, engine(h)->error());
    const jint info[2] = {engine(h)->n_ctx(), engine(h)->prefix_tokens()};
    env->SetIntArrayRegion(info_out, 0, 2, info);
    return nullptr;
}

// stats_out: the slots of result_stats.h (NativeStat.kt), generated from tools/result_stats.py.
// probs_out: all fields' values, in plan order.
JNIEXPORT jstring JNICALL Java_org_psyedge_NativeBridge_nativeAssess(JNIEnv * env, jclass, jlong h, jobjectArray heads,
                                                                     jobjectArray texts, jobjectArray tails,
                                                                     jintArray choice_out, jdoubleArray probs_out,
                                                                     jdoubleArray stats_out) {
    const auto hs = byte_list(env, heads);
    const auto ts = byte_list(env, texts);
    const auto tl = byte_list(env, tails);
    if (hs.size() != ts.size() || ts.size() != tl.size()) return message(env, "heads, texts and tails differ in length");
    std::vector<psyedge::LineText> lines;
    for (size_t i = 0; i < ts.size(); ++i) lines.push_back({hs[i], ts[i], tl[i]});
    psyedge::Result r;
    if (!engine(h)->assess(lines, r)) {
        // "input: " marks the conversation's fault (Python's InputError); NativeBridge.INPUT_ERROR.
        return message(env, (engine(h)->input_error() ? "input: " : "") + engine(h)->error());
    }

    std::vector<jint> choice(r.choice.begin(), r.choice.end());
    if (env->GetArrayLength(choice_out) < static_cast<jsize>(choice.size())) return message(env, "choice_out too small");
    env->SetIntArrayRegion(choice_out, 0, static_cast<jsize>(choice.size()), choice.data());
    std::vector<jdouble> probs;
    for (const auto & f : r.probs) probs.insert(probs.end(), f.begin(), f.end());
    if (env->GetArrayLength(probs_out) < static_cast<jsize>(probs.size())) return message(env, "probs_out too small");
    env->SetDoubleArrayRegion(probs_out, 0, static_cast<jsize>(probs.size()), probs.data());
    jdouble stats[psyedge::kStatCount];
    psyedge::fill_stats(r, stats);
    if (env->GetArrayLength(stats_out) < psyedge::kStatCount) return message(env, "stats_out too small");
    env->SetDoubleArrayRegion(stats_out, 0, psyedge::kStatCount, stats);
    return nullptr;
}

JNIEXPORT void JNICALL Java_org_psyedge_NativeBridge_nativeClose(JNIEnv *, jclass, jlong h) {
    delete engine(h);
}

}  // extern "C"

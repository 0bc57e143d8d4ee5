// psyedge_driver: the JNI engine's C++ core (psyedge::Engine) run from the command line.
//
//   psyedge_driver --model M.gguf --cases CASES.json [--threads N] [--adapter A.gguf]
//
// CASES.json (written by tools/arm_cases.py from the Python SDK) holds the context settings, the
// decode plan as text (what PsyEdge.kt passes to nativeSetPlan) and the conversations as
// transcript lines already checked and trimmed by the SDK's prompt code (what PsyEdge.kt passes
// to nativeAssess). The engine replays them in order on one context, as the Kotlin parity test
// does, so the prefix cache and the guessed answer are in the state Python had. Output: one JSON
// line describing the build and model, then one per conversation (labels, probabilities, the
// result stats by name); on failure a line {"error": ...} and exit status 1.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine.h"
#include "nlohmann/json.hpp"
#include "result_stats.h"

using nlohmann::json;

namespace {

// llama.cpp logs every tensor at load: keep warnings and errors (stderr), as the JNI glue does.
ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

void log_callback(enum ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_CONT) level = g_last_level;
    g_last_level = level;
    if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

int fail(const std::string & msg) {
    std::cout << json{{"error", msg}}.dump() << std::endl;
    return 1;
}

struct Args {
    std::string model, cases, adapter;
    int threads = 0;  // 0: the cases file's value
};

bool parse_args(int argc, char ** argv, Args & a, std::string & err) {
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (i + 1 >= argc) {
            err = k + " needs a value";
            return false;
        }
        const std::string v = argv[++i];
        if (k == "--model") {
            a.model = v;
        } else if (k == "--cases") {
            a.cases = v;
        } else if (k == "--adapter") {
            a.adapter = v;
        } else if (k == "--threads") {
            a.threads = std::atoi(v.c_str());
        } else {
            err = "unknown argument " + k;
            return false;
        }
    }
    if (a.model.empty() || a.cases.empty()) {
        err = "usage: psyedge_driver --model M.gguf --cases CASES.json [--threads N] [--adapter A.gguf]";
    }
    return err.empty();
}

}  // namespace

int main(int argc, char ** argv) {
    Args args;
    std::string err;
    if (!parse_args(argc, argv, args, err)) return fail(err);
    json doc;
    try {
        std::ifstream in(args.cases);
        if (!in) return fail("cannot read " + args.cases + ": write it with tools/arm_cases.py");
        doc = json::parse(in);
    } catch (const json::exception & e) {
        return fail(args.cases + " is not valid JSON: " + e.what());
    }

    try {
        const json & cfg = doc.at("config");
        const json & plan_doc = doc.at("plan");
        psyedge::EngineConfig config;
        config.n_ctx = cfg.at("n_ctx").get<int>();
        config.n_threads = args.threads > 0 ? args.threads : cfg.at("threads").get<int>();
        config.flash_attn = cfg.at("flash_attn").get<bool>();
        config.n_ubatch = cfg.at("n_ubatch").get<int>();
        config.answer_slack = cfg.at("answer_slack").get<int>();
        config.n_seq_max = cfg.at("n_seq_max").get<int>();
        config.adapter = args.adapter;

        llama_log_set(log_callback, nullptr);
        llama_backend_init();
        const auto t0 = std::chrono::steady_clock::now();
        psyedge::Engine engine(args.model, config);
        if (!engine.ok()) return fail(engine.error());

        psyedge::PlanText plan;
        plan.head = plan_doc.at("head").get<std::string>();
        plan.suffix = plan_doc.at("suffix").get<std::string>();
        plan.forced = plan_doc.at("forced").get<std::vector<std::string>>();
        plan.values = plan_doc.at("values").get<std::vector<std::vector<std::string>>>();
        const auto fields = plan_doc.at("fields").get<std::vector<std::string>>();
        if (fields.size() != plan.values.size()) {
            return fail("plan.fields and plan.values differ in length");
        }
        if (!engine.set_plan(plan)) return fail(engine.error());
        const auto loaded = std::chrono::steady_clock::now() - t0;
        const double load_ms = std::chrono::duration<double, std::milli>(loaded).count();
        std::cout << json{{"model", args.model},
                          {"n_ctx", engine.n_ctx()},
                          {"prefix_tokens", engine.prefix_tokens()},
                          {"threads", config.n_threads},
                          {"load_ms", load_ms},
                          {"system", llama_print_system_info()}}
                         .dump()
                  << std::endl;

        for (const json & c : doc.at("cases")) {
            std::vector<psyedge::LineText> lines;
            for (const json & l : c.at("lines")) {
                lines.push_back({l.at(0).get<std::string>(), l.at(1).get<std::string>(),
                                 l.at(2).get<std::string>()});
            }
            psyedge::Result r;
            const std::string id = c.at("id").get<std::string>();
            if (!engine.assess(lines, r)) return fail(id + ": " + engine.error());
            json labels = json::object(), probs = json::object(), stats = json::object();
            for (size_t f = 0; f < fields.size(); ++f) {
                labels[fields[f]] = plan.values[f][static_cast<size_t>(r.choice[f])];
                json p = json::object();
                for (size_t v = 0; v < plan.values[f].size(); ++v) {
                    p[plan.values[f][v]] = r.probs[f][v];
                }
                probs[fields[f]] = p;
            }
            double values[psyedge::kStatCount];
            psyedge::fill_stats(r, values);
            for (int s = 0; s < psyedge::kStatCount; ++s) stats[psyedge::kStatNames[s]] = values[s];
            const json line = {
                {"id", id}, {"labels", labels}, {"probabilities", probs}, {"stats", stats}};
            std::cout << line.dump() << std::endl;
        }
    } catch (const json::exception & e) {
        return fail(args.cases + " lacks a field or has a wrong type: " + e.what() +
                    " (regenerate it with tools/arm_cases.py)");
    }
    return 0;
}

// psyedge jump-forward screener on llama.cpp's C API (llama.h only).
//
// The same algorithm as the Python SDK's Screener (sdk/python/DECODING.md, psyedge/screener.py,
// psyedge/decode.py): segment-wise tokenization, one cached instruction prefix on sequence 0,
// the decode plan's forced text fed as token batches, and at each value position a choice among
// the allowed values by renormalised probabilities over the values' token trie. No JNI here, so
// the engine can be reasoned about (and debugged) without a JVM; psyedge_jni.cpp is the thin glue.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "llama.h"

namespace psyedge {

using Tokens = std::vector<llama_token>;

// Context settings, defaults as psyedge.decode.EngineConfig.
struct EngineConfig {
    int n_ctx = 4096;
    int n_threads = 4;
    bool flash_attn = true;
    int n_ubatch = 512;
    int n_seq_max = 11;  // 1 + the most values of any field (scratch sequences for scoring)
    int answer_slack = 8;  // DECODING.md 2: free tokens after the answer's forced text + longest values
    // A LoRA adapter GGUF applied on the model at run time ("" for none): the base keeps its own
    // type and the fine-tune is not quantized; its psyedge.* keys are read before the model's.
    std::string adapter;
};

// The contract pieces the engine needs, as text (UTF-8). Kotlin reads them from the assets.
struct PlanText {
    std::string head;                              // template.prefix + INSTRUCTION
    std::string suffix;                            // template.suffix
    std::vector<std::string> forced;               // F0..Fn, the plan's forced steps in order
    std::vector<std::vector<std::string>> values;  // per field, per allowed value: its text
};

// One turn as the transcript writes it: head ("来访者："), text, tail ("\n").
struct LineText {
    std::string head;
    std::string text;
    std::string tail;
};

struct Result {
    std::vector<int> choice;                  // per field: index of the chosen value
    std::vector<std::vector<double>> probs;   // per field, per value
    double tokenize_ms = 0, prefill_ms = 0, decode_ms = 0, total_ms = 0;
    int decode_calls = 0, prompt_tokens = 0, cached_tokens = 0, new_tokens = 0;
    int guess_misses = 0;                     // guessed values the model did not choose (DECODING.md 4)
    int kept_turns = 0;                       // turns left after fitting the context
    bool cut = false;                         // the context fit dropped turns or characters
};

// What sequence 0 of the KV cache holds, as tokens, kept equal to what it really holds
// (DECODING.md 3; psyedge.screener.KVCache is the same object): every change to sequence 0 goes
// through reuse / cut / extend / reset, so the picture cannot drift from the cache. A cache that
// cannot cut at a position (recurrent state) is rebuilt from the instruction prefix's snapshot.
class KvCache {
public:
    // Re-decodes `tokens` at positions from `start` on sequence 0, logits none (the cut fallback).
    using Redecode = std::function<bool(const Tokens & tokens, llama_pos start)>;

    void attach(llama_context * ctx, llama_memory_t mem) { ctx_ = ctx; mem_ = mem; }
    // Snapshot sequence 0 once the prefix is decoded there; false (with `error()`) on failure.
    bool snapshot(const Tokens & prefix);
    // Cut to the longest prefix shared with `full`, leaving its last token to decode; returns
    // where decoding starts, -1 when the snapshot cannot be restored.
    int reuse(const Tokens & full);
    // Drop sequence 0 from `pos` on.
    bool cut(llama_pos pos, const Redecode & redecode);
    void extend(const Tokens & tokens) { tokens_.insert(tokens_.end(), tokens.begin(), tokens.end()); }
    // Trust nothing beyond the snapshot: the next `reuse` restores the prefix.
    void reset() { tokens_.clear(); }
    bool ready() const { return !snapshot_.empty(); }
    size_t prefix_size() const { return prefix_size_; }
    const std::string & error() const { return error_; }

private:
    bool restore();

    llama_context * ctx_ = nullptr;
    llama_memory_t mem_ = nullptr;
    std::vector<uint8_t> snapshot_;
    size_t prefix_size_ = 0;
    Tokens tokens_;
    std::string error_;
};

class Engine {
public:
    // Loads the model and creates the context; on failure `error()` says why and `ok()` is false.
    Engine(const std::string & path, const EngineConfig & config);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    bool ok() const { return ctx_ != nullptr; }
    const std::string & error() const { return error_; }
    // True when the last failure was the input's fault (Python's InputError), not the model's.
    bool input_error() const { return input_error_; }

    // A GGUF metadata value (the adapter's first), or false when the key is absent.
    bool meta(const std::string & key, std::string & out) const;

    // Tokenize the plan, check that forced text and values round-trip exactly, decode the
    // prefix on sequence 0 and snapshot it. Returns false with `error()` set on failure.
    bool set_plan(const PlanText & plan);

    // Screen one prepared conversation (already checked and trimmed by the caller).
    bool assess(const std::vector<LineText> & lines, Result & out);

    int n_ctx() const { return n_ctx_; }
    int prefix_tokens() const { return static_cast<int>(prefix_.size()); }

private:
    Tokens tokenize(const std::string & text, bool special) const;
    std::string piece(llama_token t) const;
    bool tok_exact(const std::string & text, Tokens & out);
    const Tokens & line_tokens(const std::string & line);
    // Positions/sequences/logit flags per row; logits of flagged rows are appended to `logits`.
    bool decode(const Tokens & toks, const std::vector<llama_pos> & pos, const std::vector<llama_seq_id> & seq,
                const std::vector<bool> & want, std::vector<std::vector<float>> & logits);
    bool decode_seq(const Tokens & toks, llama_pos start, bool last_logits, std::vector<float> * logits);
    bool score(const std::vector<Tokens> & cands, const std::vector<float> & logits, llama_pos pos,
               int & best, std::vector<double> & probs);
    bool fail(const std::string & msg) { error_ = msg; input_error_ = false; return false; }
    bool fail_input(const std::string & msg) { error_ = msg; input_error_ = true; return false; }
    bool fail_decode();
    long answer_tokens() const;

    std::string path_;
    std::string error_;
    bool input_error_ = false;
    llama_model * model_ = nullptr;
    llama_adapter_lora * adapter_ = nullptr;
    llama_context * ctx_ = nullptr;
    llama_memory_t mem_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
    llama_batch batch_{};
    bool batch_ready_ = false;
    int n_ctx_ = 0;
    int n_vocab_ = 0;
    int n_seq_max_ = 1;
    int answer_slack_ = 8;
    int decode_calls_ = 0;

    Tokens prefix_, suffix_;
    std::vector<Tokens> forced_;
    std::vector<std::vector<Tokens>> values_;
    KvCache kv_;
    std::vector<int> guess_;  // per field: the value index chosen last time (DECODING.md 4)
    std::unordered_map<std::string, Tokens> line_cache_;
};

}  // namespace psyedge

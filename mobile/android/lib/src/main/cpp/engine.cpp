// psyedge jump-forward screener: see engine.h and sdk/python/DECODING.md (section numbers below).
#include "engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

namespace psyedge {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Number of code points in valid UTF-8 (continuation bytes are 10xxxxxx).
size_t utf8_length(const std::string & s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

// The suffix of `s` after its first `skip` code points (Python's text[skip:]).
std::string utf8_drop(const std::string & s, size_t skip) {
    size_t i = 0;
    while (i < s.size() && skip > 0) {
        ++i;
        while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
        --skip;
    }
    return s.substr(i);
}

std::string quoted(const std::string & s) {
    return "'" + (s.size() > 60 ? s.substr(0, 60) + "..." : s) + "'";
}

}  // namespace

Engine::Engine(const std::string & path, const EngineConfig & config)
    : path_(path), answer_slack_(config.answer_slack) {
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    model_ = llama_model_load_from_file(path.c_str(), mp);
    if (!model_) {
        error_ = "llama.cpp could not load " + path +
                 ": not a GGUF model it supports (check the file is complete and its architecture is supported)";
        return;
    }
    vocab_ = llama_model_get_vocab(model_);
    n_vocab_ = llama_vocab_n_tokens(vocab_);

    // DECODING.md 1: the context settings of psyedge.decode.Engine.
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(config.n_ctx);
    cp.n_batch = static_cast<uint32_t>(config.n_ctx);  // a whole segment per llama_decode call
    cp.n_ubatch = static_cast<uint32_t>(std::min(config.n_ubatch, config.n_ctx));
    cp.n_threads = config.n_threads;
    cp.n_threads_batch = config.n_threads;
    cp.kv_unified = true;   // sequence copies are metadata only
    cp.swa_full = true;     // a sliding-window cache stays cuttable at any position
    cp.no_perf = true;
    cp.flash_attn_type = config.flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.n_seq_max = static_cast<uint32_t>(config.n_seq_max);
    n_seq_max_ = config.n_seq_max;
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_ && config.flash_attn) {
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
        ctx_ = llama_init_from_model(model_, cp);
    }
    if (!ctx_) {
        error_ = "llama.cpp could not create a context for " + path + " with n_ctx=" +
                 std::to_string(config.n_ctx) + "; try a smaller n_ctx";
        return;
    }
    if (!config.adapter.empty()) {
        adapter_ = llama_adapter_lora_init(model_, config.adapter.c_str());
        float scale = 1.0f;
        if (!adapter_ || llama_set_adapters_lora(ctx_, &adapter_, 1, &scale) != 0) {
            error_ = "llama.cpp could not load the adapter " + config.adapter + " onto " + path +
                     ": not a LoRA adapter GGUF, or made for another base (architecture, shapes)";
            llama_free(ctx_);
            ctx_ = nullptr;
            return;
        }
    }
    // llama.cpp may round the context up (to a multiple of 256); a batch beyond n_batch aborts the
    // process, so the usable context is the smaller of the two (DECODING.md 1).
    n_ctx_ = static_cast<int>(std::min(llama_n_ctx(ctx_), llama_n_batch(ctx_)));
    mem_ = llama_get_memory(ctx_);
    batch_ = llama_batch_init(n_ctx_, 0, n_seq_max_);
    batch_ready_ = true;
}

Engine::~Engine() {
    if (batch_ready_) llama_batch_free(batch_);
    if (ctx_) llama_free(ctx_);
    if (adapter_) llama_adapter_lora_free(adapter_);
    if (model_) llama_model_free(model_);
}

bool Engine::meta(const std::string & key, std::string & out) const {
    auto read = [&](auto fn, auto * obj) {
        std::vector<char> buf(4096);
        int32_t n = fn(obj, key.c_str(), buf.data(), buf.size());
        if (n < 0) return false;
        if (static_cast<size_t>(n) >= buf.size()) {
            buf.resize(static_cast<size_t>(n) + 1);
            fn(obj, key.c_str(), buf.data(), buf.size());
        }
        out.assign(buf.data(), static_cast<size_t>(n));
        return true;
    };
    return (adapter_ && read(llama_adapter_meta_val_str, adapter_)) ||
           read(llama_model_meta_val_str, model_);
}

Tokens Engine::tokenize(const std::string & text, bool special) const {
    // add_special=false everywhere: BOS is added by hand to the prefix only (DECODING.md 2).
    Tokens toks(text.size() + 8);
    int32_t n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), toks.data(),
                               static_cast<int32_t>(toks.size()), false, special);
    if (n < 0) {
        toks.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), toks.data(),
                           static_cast<int32_t>(toks.size()), false, special);
    }
    toks.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return toks;
}

std::string Engine::piece(llama_token t) const {
    char buf[64];
    int32_t n = llama_token_to_piece(vocab_, t, buf, sizeof(buf), 0, false);
    if (n >= 0) return std::string(buf, static_cast<size_t>(n));
    std::string big(static_cast<size_t>(-n), '\0');
    n = llama_token_to_piece(vocab_, t, big.data(), static_cast<int32_t>(big.size()), 0, false);
    big.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return big;
}

bool Engine::tok_exact(const std::string & text, Tokens & out) {
    out = tokenize(text, false);
    std::string back;
    for (llama_token t : out) back += piece(t);
    if (back != text) {
        return fail(path_ + ": the tokenizer does not round-trip " + quoted(text) + " (gives " + quoted(back) +
                    "); jump-forward decoding needs exact forced text (a space-prefix SPM vocabulary?)");
    }
    return true;
}

bool Engine::set_plan(const PlanText & plan) {
    prefix_.clear();
    if (llama_vocab_get_add_bos(vocab_)) prefix_.push_back(llama_vocab_bos(vocab_));
    Tokens head = tokenize(plan.head, true);
    prefix_.insert(prefix_.end(), head.begin(), head.end());
    suffix_ = tokenize(plan.suffix, true);
    forced_.clear();
    for (const std::string & f : plan.forced) {
        Tokens t;
        if (!f.empty() && !tok_exact(f, t)) return false;
        forced_.push_back(t);
    }
    values_.clear();
    size_t most = 0;
    for (const auto & field : plan.values) {
        std::vector<Tokens> cands;
        for (const std::string & v : field) {
            Tokens t;
            if (!tok_exact(v, t)) return false;
            if (t.empty()) return fail(path_ + ": value " + quoted(v) + " tokenizes to nothing");
            cands.push_back(t);
        }
        for (size_t i = 0; i < cands.size(); ++i) {
            for (size_t j = 0; j < cands.size(); ++j) {
                if (i != j && cands[j].size() >= cands[i].size() &&
                    std::equal(cands[i].begin(), cands[i].end(), cands[j].begin())) {
                    return fail(path_ + ": value " + quoted(field[i]) + " tokenizes as a prefix of " +
                                quoted(field[j]) + "; jump-forward cannot tell them apart");
                }
            }
        }
        most = std::max(most, cands.size());
        values_.push_back(cands);
    }
    if (forced_.size() != values_.size() + 1) {
        return fail("the decode plan must alternate forced text and values (got " + std::to_string(forced_.size()) +
                    " forced steps for " + std::to_string(values_.size()) + " fields)");
    }
    if (static_cast<int>(most) + 1 > n_seq_max_) {
        return fail("a field has " + std::to_string(most) + " values; this build scores at most " +
                    std::to_string(n_seq_max_ - 1));
    }
    if (static_cast<int>(prefix_.size() + suffix_.size()) + answer_tokens() >= n_ctx_) {
        return fail("the instruction prefix (" + std::to_string(prefix_.size()) + " tokens) does not fit n_ctx=" +
                    std::to_string(n_ctx_));
    }
    // DECODING.md 3: decode the prefix once on sequence 0 and snapshot that sequence's state.
    llama_memory_clear(mem_, true);
    if (!decode_seq(prefix_, 0, false, nullptr)) return false;
    kv_.attach(ctx_, mem_);
    if (!kv_.snapshot(prefix_)) return fail(kv_.error());
    guess_.assign(values_.size(), 0);
    line_cache_.clear();
    return true;
}

long Engine::answer_tokens() const {
    // DECODING.md 2: every forced segment, the longest value of each field, and the slack.
    long n = answer_slack_;
    for (const Tokens & f : forced_) n += static_cast<long>(f.size());
    for (const auto & field : values_) {
        size_t longest = 0;
        for (const Tokens & v : field) longest = std::max(longest, v.size());
        n += static_cast<long>(longest);
    }
    return n;
}

bool Engine::fail_decode() {
    kv_.reset();  // the cache may be half-written: the next call rebuilds from the prefix snapshot
    return false;
}

const Tokens & Engine::line_tokens(const std::string & line) {
    auto it = line_cache_.find(line);
    if (it != line_cache_.end()) return it->second;
    if (line_cache_.size() > 512) line_cache_.clear();
    // parse_special=false: a user typing "<|im_end|>" gets plain text, never a control token.
    return line_cache_.emplace(line, tokenize(line, false)).first->second;
}

bool Engine::decode(const Tokens & toks, const std::vector<llama_pos> & pos, const std::vector<llama_seq_id> & seq,
                    const std::vector<bool> & want, std::vector<std::vector<float>> & logits) {
    const int n = static_cast<int>(toks.size());
    if (n == 0) return true;
    if (n > n_ctx_) {
        return fail("batch of " + std::to_string(n) + " tokens exceeds the context of " + std::to_string(n_ctx_));
    }
    std::vector<int> outputs;
    for (int i = 0; i < n; ++i) {
        batch_.token[i] = toks[i];
        batch_.pos[i] = pos[i];
        batch_.n_seq_id[i] = 1;
        batch_.seq_id[i][0] = seq[i];
        batch_.logits[i] = want[i] ? 1 : 0;
        if (want[i]) outputs.push_back(i);
    }
    batch_.n_tokens = n;
    int32_t rc = llama_decode(ctx_, batch_);
    ++decode_calls_;
    if (rc != 0) {
        return fail("llama_decode failed with code " + std::to_string(rc) + " on a batch of " + std::to_string(n) +
                    " tokens (positions " + std::to_string(pos.front()) + ".." + std::to_string(pos.back()) +
                    ", context " + std::to_string(n_ctx_) + ")");
    }
    for (int i : outputs) {
        const float * p = llama_get_logits_ith(ctx_, i);
        if (!p) return fail("llama.cpp returned no logits for batch row " + std::to_string(i));
        logits.emplace_back(p, p + n_vocab_);
    }
    return true;
}

bool Engine::decode_seq(const Tokens & toks, llama_pos start, bool last_logits, std::vector<float> * logits) {
    const size_t n = toks.size();
    std::vector<llama_pos> pos(n);
    std::vector<llama_seq_id> seq(n, 0);
    std::vector<bool> want(n, false);
    for (size_t i = 0; i < n; ++i) pos[i] = start + static_cast<llama_pos>(i);
    if (last_logits && n > 0) want[n - 1] = true;
    std::vector<std::vector<float>> out;
    if (!decode(toks, pos, seq, want, out)) return false;
    if (logits && !out.empty()) *logits = std::move(out.front());
    return true;
}

bool KvCache::snapshot(const Tokens & prefix) {
    const size_t size = llama_state_seq_get_size(ctx_, 0);
    snapshot_.resize(size);
    const size_t got = llama_state_seq_get_data(ctx_, snapshot_.data(), size, 0);
    if (got != size) {
        snapshot_.clear();
        error_ = "llama_state_seq_get_data copied " + std::to_string(got) + " of " + std::to_string(size) + " bytes";
        return false;
    }
    prefix_size_ = prefix.size();
    tokens_ = prefix;
    return true;
}

bool KvCache::restore() {
    // Empty the cache and put the instruction prefix's snapshot back (DECODING.md 3).
    error_.clear();
    llama_memory_clear(mem_, true);
    if (llama_state_seq_set_data(ctx_, snapshot_.data(), snapshot_.size(), 0) == 0) {
        error_ = "llama_state_seq_set_data failed to restore the instruction prefix";
        return false;
    }
    return true;
}

int KvCache::reuse(const Tokens & full) {
    // At least one token is left to decode, for its logits.
    const size_t n = std::min(tokens_.size(), full.size() - 1);
    size_t k = 0;
    while (k < n && tokens_[k] == full[k]) ++k;
    if (k < prefix_size_ || !llama_memory_seq_rm(mem_, 0, static_cast<llama_pos>(k), -1)) {
        if (!restore()) return -1;
        k = prefix_size_;
    }
    tokens_.assign(full.begin(), full.begin() + static_cast<long>(k));
    return static_cast<int>(k);
}

bool KvCache::cut(llama_pos pos, const Redecode & redecode) {
    tokens_.resize(static_cast<size_t>(pos));
    if (llama_memory_seq_rm(mem_, 0, pos, -1)) return true;
    if (!restore()) return false;
    const Tokens keep(tokens_.begin() + static_cast<long>(prefix_size_), tokens_.end());
    return redecode(keep, static_cast<llama_pos>(prefix_size_));
}

bool Engine::score(const std::vector<Tokens> & cands, const std::vector<float> & logits, llama_pos pos,
                   int & best, std::vector<double> & probs) {
    // DECODING.md 4 (psyedge.decode.shared_first / choose).
    const size_t nc = cands.size();
    std::vector<size_t> shared;
    for (size_t i = 0; i < nc; ++i) {
        for (size_t j = 0; j < nc; ++j) {
            if (i != j && cands[j][0] == cands[i][0]) {
                shared.push_back(i);
                break;
            }
        }
    }
    std::vector<std::vector<std::vector<float>>> deeper(nc);
    if (!shared.empty()) {
        Tokens toks;
        std::vector<llama_pos> ps;
        std::vector<llama_seq_id> ss;
        std::vector<bool> want;
        for (size_t s = 0; s < shared.size(); ++s) {
            const auto sid = static_cast<llama_seq_id>(s + 1);
            llama_memory_seq_cp(mem_, 0, sid, 0, pos);  // the context before the value, not the guess
            const Tokens & c = cands[shared[s]];
            for (size_t d = 0; d + 1 < c.size(); ++d) {
                toks.push_back(c[d]);
                ps.push_back(pos + static_cast<llama_pos>(d));
                ss.push_back(sid);
                want.push_back(true);
            }
        }
        std::vector<std::vector<float>> out;
        if (!decode(toks, ps, ss, want, out)) return false;
        size_t at = 0;
        for (size_t i : shared) {
            const size_t n = cands[i].size() - 1;
            deeper[i].assign(out.begin() + static_cast<long>(at), out.begin() + static_cast<long>(at + n));
            at += n;
        }
        for (size_t s = 0; s < shared.size(); ++s) {
            llama_memory_seq_rm(mem_, static_cast<llama_seq_id>(s + 1), -1, -1);
        }
    }

    probs.assign(nc, 1.0);
    for (size_t i = 0; i < nc; ++i) {
        const Tokens & toks = cands[i];
        double p = 1.0;
        for (size_t d = 0; d < toks.size(); ++d) {
            std::set<llama_token> kids;  // sorted, as Python's sorted({...})
            for (const Tokens & c : cands) {
                if (c.size() > d && std::equal(c.begin(), c.begin() + static_cast<long>(d), toks.begin())) {
                    kids.insert(c[d]);
                }
            }
            if (kids.size() < 2) continue;
            const std::vector<float> & lg = d == 0 ? logits : deeper[i][d - 1];
            double m = -INFINITY;
            for (llama_token k : kids) m = std::max(m, static_cast<double>(lg[static_cast<size_t>(k)]));
            double sum = 0, mine = 0;
            for (llama_token k : kids) {
                const double e = std::exp(static_cast<double>(lg[static_cast<size_t>(k)]) - m);
                sum += e;
                if (k == toks[d]) mine = e;
            }
            p *= mine / sum;
        }
        probs[i] = p;
    }
    double total = 0;
    for (double p : probs) total += p;
    best = 0;
    for (size_t i = 0; i < nc; ++i) {
        probs[i] /= total;
    }
    for (size_t i = 1; i < nc; ++i) {
        if (probs[i] > probs[static_cast<size_t>(best)]) best = static_cast<int>(i);  // ties: earlier value
    }
    return true;
}

bool Engine::assess(const std::vector<LineText> & input, Result & out) {
    const auto t0 = std::chrono::steady_clock::now();
    const int calls0 = decode_calls_;
    if (!kv_.ready()) return fail("no decode plan installed: call set_plan first");
    if (input.empty()) return fail_input("no turns to assess");

    // DECODING.md 2: fit the context, dropping the oldest turns, then the oldest characters.
    std::vector<LineText> turns = input;
    std::vector<Tokens> lines;
    for (const LineText & t : turns) lines.push_back(line_tokens(t.head + t.text + t.tail));
    const long budget = static_cast<long>(n_ctx_) - static_cast<long>(prefix_.size() + suffix_.size()) -
                        answer_tokens();
    auto total = [&lines]() {
        long s = 0;
        for (const Tokens & l : lines) s += static_cast<long>(l.size());
        return s;
    };
    bool cut = false;
    while (turns.size() > 1 && total() > budget) {
        turns.erase(turns.begin());
        lines.erase(lines.begin());
        cut = true;
    }
    while (total() > budget) {
        const std::string & text = turns[0].text;
        const size_t len = utf8_length(text);
        turns[0].text = utf8_drop(text, len / 4 ? len / 4 : 1);
        lines = {line_tokens(turns[0].head + turns[0].text + turns[0].tail)};
        cut = true;
        if (turns[0].text.empty()) {
            return fail_input("the context of " + std::to_string(n_ctx_) + " tokens is too small for the instruction");
        }
    }

    Tokens full = prefix_;
    for (const Tokens & l : lines) full.insert(full.end(), l.begin(), l.end());
    full.insert(full.end(), suffix_.begin(), suffix_.end());
    full.insert(full.end(), forced_[0].begin(), forced_[0].end());
    const auto t_tok = std::chrono::steady_clock::now();

    const int k = kv_.reuse(full);
    if (k < 0) {
        fail(kv_.error());
        return fail_decode();
    }

    // DECODING.md 4: the new prompt tokens and the guessed answer in one call; from the first
    // value the model does not choose as guessed, cut the rest and decode again from there.
    const size_t nf = values_.size();
    out.choice.assign(nf, 0);
    out.probs.assign(nf, {});
    out.guess_misses = 0;
    Tokens seg(full.begin() + k, full.end());
    llama_pos start = k;
    size_t first = 0;
    auto t_prefill = std::chrono::steady_clock::now();
    bool first_call = true;
    while (first < nf) {
        Tokens tail = seg;
        std::vector<size_t> wanted = {seg.size() - 1};
        for (size_t f = first; f + 1 < nf; ++f) {
            const Tokens & g = values_[f][static_cast<size_t>(guess_[f])];
            tail.insert(tail.end(), g.begin(), g.end());
            tail.insert(tail.end(), forced_[f + 1].begin(), forced_[f + 1].end());
            wanted.push_back(tail.size() - 1);
        }
        std::vector<llama_pos> ps(tail.size());
        std::vector<llama_seq_id> ss(tail.size(), 0);
        std::vector<bool> want(tail.size(), false);
        for (size_t i = 0; i < tail.size(); ++i) ps[i] = start + static_cast<llama_pos>(i);
        for (size_t i : wanted) want[i] = true;
        std::vector<std::vector<float>> outs;
        if (!decode(tail, ps, ss, want, outs)) return fail_decode();
        kv_.extend(tail);
        if (first_call) {
            t_prefill = std::chrono::steady_clock::now();
            first_call = false;
        }
        llama_pos pos = start + static_cast<llama_pos>(seg.size());  // where field `first`'s value begins
        size_t next = nf;
        for (size_t j = 0; j < outs.size(); ++j) {
            const size_t f = first + j;
            int best = 0;
            if (!score(values_[f], outs[j], pos, best, out.probs[f])) return fail_decode();
            out.choice[f] = best;
            if (f + 1 == nf) break;  // the closing forced text needs no decoding
            const Tokens & v = values_[f][static_cast<size_t>(best)];
            if (best != guess_[f]) {  // the rest of the batch saw a wrong value: cut it, go on from here
                ++out.guess_misses;
                const auto redecode = [this](const Tokens & keep, llama_pos at) {
                    return decode_seq(keep, at, false, nullptr);
                };
                if (!kv_.cut(pos, redecode)) {
                    if (!kv_.error().empty()) fail(kv_.error());  // else decode_seq said why
                    return fail_decode();
                }
                seg = v;
                seg.insert(seg.end(), forced_[f + 1].begin(), forced_[f + 1].end());
                start = pos;
                next = f + 1;
                break;
            }
            pos += static_cast<llama_pos>(v.size() + forced_[f + 1].size());
        }
        first = next;
    }
    guess_ = out.choice;
    const auto t_decode = std::chrono::steady_clock::now();

    out.tokenize_ms = std::chrono::duration<double, std::milli>(t_tok - t0).count();
    out.prefill_ms = std::chrono::duration<double, std::milli>(t_prefill - t_tok).count();
    out.decode_ms = std::chrono::duration<double, std::milli>(t_decode - t_prefill).count();
    out.total_ms = ms_since(t0);
    out.decode_calls = decode_calls_ - calls0;
    out.prompt_tokens = static_cast<int>(full.size());
    out.cached_tokens = k;
    out.new_tokens = static_cast<int>(full.size()) - k;
    out.kept_turns = static_cast<int>(turns.size());
    out.cut = cut;
    return true;
}

}  // namespace psyedge

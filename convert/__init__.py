"""Stage 4: merged Hugging Face model -> GGUF (`convert.to_gguf`) -> quantised GGUF (`convert.quantize`).

Modules: `hf_model` checks the input folder, `safetensors_io` reads weights without torch,
`tensor_map` names tensors per architecture, `vocab` writes the BPE vocabulary and picks the
llama.cpp pre-tokenizer, `gguf_types` reads a written file back.
"""

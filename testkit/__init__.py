"""Test doubles and builders shared by the tests and the benchmarks, importable as a package.

`gguf_factory` writes small random-weight GGUF models, `plain_path` is llama-cpp-python's
grammar-constrained completion (the path psyedge is compared with), `fake_gemini` is a fake
Gemini server on 127.0.0.1 and `label_builders` writes labeling inputs. They live here rather
than beside the tests so that `benchmarks/` imports them like any other module.
"""

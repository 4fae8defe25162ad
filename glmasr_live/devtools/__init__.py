"""Developer tools: benchmarks, the evaluation harness and test-speech synthesis.

Nothing in the product imports this package; it sits on top and may import every stage.
"""

"""The demo model's trainer (``scripts/train_demo_model.py``, ``python -m glmasr_live.devtools.training``).

By concern: ``voices`` renders the voice bank and draws utterances from it, ``batches`` cuts them
into windows and builds the model's inputs, ``targets`` turns the synthesiser's word spans into
the training-only alignment and word targets, ``losses`` runs the forward pass and its losses,
``loop`` builds the model, trains, averages, saves and scores it, and ``cli`` parses the flags
(its docstring is the recipe's description, shown by ``--help``).

This is the one place outside ``asr/`` that imports torch and transformers (a trainer needs the
tensors and the model's internals); the product never imports it (``tests/test_layout.py``).
"""

"""``python -m glmasr_live.devtools.training``: the same as ``python scripts/train_demo_model.py``."""

from glmasr_live.devtools.training.cli import main

if __name__ == "__main__":
    # argparse would name the program __main__.py
    main(prog="python -m glmasr_live.devtools.training")

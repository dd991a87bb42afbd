"""Evaluate a distilled set (or the random-real baseline) and export it as PNGs; see --help."""
from common.cli import run_main
from common.eval_main import main

if __name__ == "__main__":
    run_main(main)

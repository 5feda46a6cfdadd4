"""``python -m beam_labelissues``: the command line (see ``beam_labelissues.cli``)."""

from beam_labelissues.cli import run_and_exit

if __name__ == "__main__":
    run_and_exit()

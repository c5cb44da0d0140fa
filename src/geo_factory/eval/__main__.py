"""``python -m geo_factory.eval CONFIG.yaml``: what each process runs when ``llamafactory-cli eval`` starts torchrun."""

from . import run_eval


run_eval()

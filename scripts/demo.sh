#!/usr/bin/env bash
# The main job on the embedded default, offline: tiny Mistral + bundled demo data,
# pretrain -> SFT -> merge -> one chat answer -> GeoBench, all through the stock llamafactory-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUDA_VISIBLE_DEVICES=""

[ -f models/tiny-mistral/model.safetensors ] || geo-factory tiny-model models/tiny-mistral
llamafactory-cli train examples/tiny/tiny_lora_pretrain.yaml
llamafactory-cli train examples/tiny/tiny_lora_sft.yaml
llamafactory-cli export examples/tiny/tiny_lora_merge.yaml
# Stock LLaMA-Factory 0.9.5 `chat` on a CPU sometimes aborts (SIGABRT, status 134) *after* `exit`, when its
# event-loop thread is torn down; the answer is already printed by then.
printf 'What is a subduction zone?\nexit\n' | llamafactory-cli chat examples/tiny/tiny_chat.yaml || [ $? -eq 134 ]
# GeoBench on the merged model, with the project's own small fixtures in K2's layout
llamafactory-cli eval examples/tiny/tiny_eval.yaml model_name_or_path=saves/tiny/merged template=mistral save_dir=saves/tiny/geobench_merged

